// Abort: requests still held by the layer are completed here; those at the module get an
// Abort bdev_io each, when the module supports it; a split request, one per child.

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

// Recalls a split parent: its children waiting for a bounce buffer complete at once, those
// at the module get an Abort each, and the parent sends no further children, completing
// "aborted by request" after the last. False if a child is at a module that cannot abort
// (nothing changes then), or no bdev_io was free for one of the aborts.
bool abort_split(BdevIo *parent, BdevIo *target, bool module_aborts) {
    BdevIo::Private *t = target->priv;
    uint32_t at_module = 0;
    for (BdevIo *c = t->split_children; c != nullptr; c = c->priv->sibling_next) {
        at_module += c->priv->stage != IoStage::BufWait ? 1 : 0;
    }
    if (at_module > 0 && !module_aborts) {
        return false;
    }
    if (t->status.ok()) {
        t->status = nvme_status::kAbortedByRequest;
    }
    bool all = true;
    // A module may complete a child inside its abort, and the last child's completion
    // completes the target: the walk ends with the next child saved.
    for (BdevIo *c = t->split_children, *next = nullptr; c != nullptr; c = next) {
        next = c->priv->sibling_next;
        if (c->priv->stage == IoStage::BufWait) {
            buf_abort(c);
            c->priv->stage = IoStage::Executing;
            complete_later(c, nvme_status::kAbortedByRequest);
        } else {
            all = abort_at_module(parent, c) && all;
        }
    }
    return all;
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
                aborted = io->priv->splitting ? abort_split(parent, io, module_aborts)
                                              : module_aborts && abort_at_module(parent, io);
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
