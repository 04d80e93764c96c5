// Abort: requests still held by the layer are completed here; those at the module get an
// Abort bdev_io each, when the module supports it.

#include <cerrno>

#include "bdev_internal.h"

namespace flint::bdev {
namespace {

// One reference per abort sent to the module, plus one while abort() walks the list.
void abort_release(BdevIo *parent) {
    BdevIo::Private *pp = parent->priv;
    if (--pp->abort_children == 0) {
        complete_later(parent,
                       pp->abort_failed ? nvme_status::kInternalError : nvme_status::kSuccess);
    }
}

void abort_child_done(BdevIo *child) {
    BdevIo *parent = child->priv->abort_parent;
    if (!child->priv->status.ok()) {
        parent->priv->abort_failed = true;
    }
    free_io(child);
    abort_release(parent);
}

// Sends an Abort for target to the module; false if no bdev_io is free for it.
bool abort_at_module(BdevIo *parent, BdevIo *target) {
    BdevChannel *bc = parent->priv->ch;
    BdevIo *child = pop_free_io(bc);
    if (child == nullptr) {
        return false;
    }
    child->type = IoType::Abort;
    child->offset_blocks = 0;
    child->num_blocks = 0;
    child->iovs = nullptr;
    child->iovcnt = 0;
    child->bio_to_abort = target;
    init_child(child, abort_child_done);
    child->priv->abort_parent = parent;
    ++parent->priv->abort_children;
    start(child);
    return true;
}

}  // namespace

int abort(Desc *d, thread::IoChannel *ch, void *bio_cb_arg, IoCallback cb, void *cb_arg) {
    int rc;
    BdevIo *parent = prepare(d, ch, IoType::Abort, 0, 0, cb, cb_arg, &rc);
    if (parent == nullptr) {
        return rc;
    }
    BdevIo::Private *pp = parent->priv;
    BdevChannel *bc = pp->ch;
    pp->abort_children = 1;
    pp->abort_failed = false;
    bool module_aborts = parent->bdev->ops->supports(IoType::Abort);
    uint32_t matched = 0;
    for (BdevIo *io = bc->tracked_head, *next = nullptr; io != nullptr; io = next) {
        next = io->priv->track_next;
        if (io->priv->cb_arg != bio_cb_arg) {
            continue;
        }
        ++matched;
        bool aborted = false;
        IoStage stage = io->priv->stage;  // a module may complete io inside the abort
        switch (stage) {
            case IoStage::QosHeld:
                aborted = qos_unqueue(bc, io);
                break;
            case IoStage::LockHeld:
                aborted = lock_unqueue(bc, io);
                break;
            case IoStage::BufWait:
                buf_abort(io);
                aborted = true;
                break;
            case IoStage::Executing:
                aborted = module_aborts && abort_at_module(parent, io);
                break;
            default:  // taking its own range lock: it cannot be recalled mid-way
                break;
        }
        if (!aborted) {
            pp->abort_failed = true;
        } else if (stage != IoStage::Executing) {
            io->priv->stage = IoStage::Executing;
            complete_later(io, nvme_status::kAbortedByRequest);
        }
    }
    if (matched == 0) {
        pp->abort_failed = true;
    }
    abort_release(parent);
    return 0;
}

}  // namespace flint::bdev
