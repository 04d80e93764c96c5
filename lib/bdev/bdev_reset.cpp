// Reset: freeze every channel of the bdev, drain outstanding I/O, reset the device, thaw.

#include <memory>

#include "bdev_internal.h"
#include "flint/util/log.h"

namespace flint::bdev {
namespace {

struct ResetCtx {
    BdevIo *io;
    Bdev *bdev;
    thread::Poller *poller = nullptr;
    bool checking = false;
};

void set_frozen(Bdev *b, bool frozen, std::function<void()> then) {
    thread::for_each_channel(
        b,
        [frozen](thread::ChannelIter &it) {
            BdevChannel *bc = bdev_channel(it.channel());
            bc->frozen = frozen;
            if (frozen) {
                // I/O waiting for QoS budget is aborted now (execute() sees the freeze), as
                // SPDK aborts its QoS queue: it neither delays the reset nor runs within it.
                qos_release_held(bc);
            }
            it.next(0);
        },
        [then = std::move(then)](int) { then(); });
}

void reset_done(BdevIo *io) {
    Bdev *b = io->bdev;
    set_frozen(b, false, [io, b] {
        b->state->reset_in_progress.store(false);
        finish(io);
    });
}

void reset_submit(ResetCtx *rc) {
    BdevIo *io = rc->io;
    delete rc;
    BdevChannel *bc = io->priv->ch;
    io->priv->on_done = reset_done;
    ++bc->outstanding;
    if (io->bdev->ops->supports(IoType::Reset)) {
        io->bdev->ops->submit(bc->module_ch, io);
    } else {
        io_complete(io, nvme_status::kSuccess);
    }
}

// Polls (every 100 us) until no channel has I/O outstanding.
int reset_drain_poll(void *arg) {
    auto *rc = static_cast<ResetCtx *>(arg);
    if (rc->checking) {
        return thread::kIdle;
    }
    rc->checking = true;
    auto total = std::make_shared<uint64_t>(0);
    thread::for_each_channel(
        rc->bdev,
        [total](thread::ChannelIter &it) {
            *total += bdev_channel(it.channel())->outstanding;
            it.next(0);
        },
        [rc, total](int) {
            rc->checking = false;
            if (*total == 0) {
                thread::poller_unregister(&rc->poller);
                reset_submit(rc);
            }
        });
    return thread::kBusy;
}

}  // namespace

int reset(Desc *d, thread::IoChannel *ch, IoCallback cb, void *cb_arg) {
    Bdev *b = bdev_channel(ch)->bdev;
    bool expected = false;
    if (!b->state->reset_in_progress.compare_exchange_strong(expected, true)) {
        return -EBUSY;
    }
    int rc;
    BdevIo *io = prepare(d, ch, IoType::Reset, 0, 0, cb, cb_arg, &rc);
    if (io == nullptr) {
        b->state->reset_in_progress.store(false);
        return rc;
    }
    io->priv->submit_tsc = thread::poll_ticks();
    auto *ctx = new ResetCtx{io, b};
    set_frozen(b, true, [ctx] {
        ctx->poller = thread::poller_register(reset_drain_poll, ctx, 100, "bdev_reset_drain");
    });
    return 0;
}

}  // namespace flint::bdev
