// The bdev data path: submission, the stages a request passes, completion, statistics.

#include <cerrno>
#include <memory>

#include "bdev_internal.h"
#include "flint/util/log.h"

namespace flint::bdev {

void complete_later(BdevIo *io, NvmeStatus status) {
    io->priv->status = status;
    io->priv->submit_tsc = thread::poll_ticks();
    ++io->priv->ch->outstanding;
    thread::send_msg(
        thread::current(),
        [](void *arg) {
            auto *io = static_cast<BdevIo *>(arg);
            io_complete(io, io->priv->status);
        },
        io);
}

namespace {

void account(IoStats &s, const BdevIo *io, uint64_t ticks, bool ok) {
    if (!ok) {
        ++s.io_errors;
        return;
    }
    uint64_t bytes = io_bytes(io);
    switch (io->type) {
        case IoType::Read:
            s.bytes_read += bytes;
            ++s.num_read_ops;
            s.read_latency_ticks += ticks;
            s.max_read_latency_ticks = std::max(s.max_read_latency_ticks, ticks);
            s.min_read_latency_ticks = std::min(s.min_read_latency_ticks, ticks);
            break;
        case IoType::Write:
            s.bytes_written += bytes;
            ++s.num_write_ops;
            s.write_latency_ticks += ticks;
            s.max_write_latency_ticks = std::max(s.max_write_latency_ticks, ticks);
            s.min_write_latency_ticks = std::min(s.min_write_latency_ticks, ticks);
            break;
        case IoType::Unmap:
            s.bytes_unmapped += bytes;
            ++s.num_unmap_ops;
            s.unmap_latency_ticks += ticks;
            break;
        default:
            ++s.num_other_ops;
            break;
    }
}

}  // namespace

bool is_write_type(IoType t) {
    return t == IoType::Write || t == IoType::Unmap || t == IoType::WriteZeroes ||
           t == IoType::CompareAndWrite;
}

BdevIo *prepare(Desc *d, thread::IoChannel *ch, IoType type, uint64_t offset, uint64_t num,
                IoCallback cb, void *cb_arg, int *rc) {
    BdevChannel *bc = bdev_channel(ch);
    Bdev *b = bc->bdev;
    if (b->state->removing.load(std::memory_order_relaxed)) {
        *rc = -ENODEV;
        return nullptr;
    }
    if ((is_write_type(type) || type == IoType::Abort) && !d->write) {
        *rc = -EBADF;
        return nullptr;
    }
    uint64_t size = b->state->num_blocks.load(std::memory_order_relaxed);
    if (type != IoType::Reset && type != IoType::Abort &&
        (num == 0 || offset >= size || num > size - offset)) {
        *rc = -EINVAL;
        return nullptr;
    }
    BdevIo *io = pop_free_io(bc);
    if (io == nullptr) {
        *rc = -ENOMEM;
        return nullptr;
    }
    io->type = type;
    io->offset_blocks = offset;
    io->num_blocks = num;
    io->iovs = nullptr;
    io->iovcnt = 0;
    init_child(io, nullptr);
    io->priv->cb = cb;
    io->priv->cb_arg = cb_arg;
    *rc = 0;
    return io;
}

bool iov_covers(const iovec *iov, int iovcnt, uint64_t bytes) {
    if (iov == nullptr || iovcnt <= 0) {
        return false;
    }
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; ++i) {
        if (iov[i].iov_base == nullptr) {
            return false;
        }
        total += iov[i].iov_len;
    }
    return total == bytes;
}

namespace {

// The caller's iovecs for a request of type: see iov_covers; or, for a read, one iovec
// with a null base, asking the layer for the buffer (up to an iobuf large buffer).
bool iovs_ok(IoType type, const iovec *iov, int iovcnt, uint64_t bytes) {
    if (type == IoType::Read && iov != nullptr && iovcnt == 1 && iov[0].iov_base == nullptr) {
        return iov[0].iov_len == bytes && bytes <= thread::iobuf_get_options().large_bufsize;
    }
    return iov_covers(iov, iovcnt, bytes);
}

int submit_vec(Desc *d, thread::IoChannel *ch, IoType type, const iovec *iov, int iovcnt,
               uint64_t offset, uint64_t num, IoCallback cb, void *cb_arg) {
    int rc;
    BdevIo *io = prepare(d, ch, type, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    uint64_t bytes = num * io->bdev->block_size;
    if (!iovs_ok(type, iov, iovcnt, bytes)) {
        free_io(io);
        return -EINVAL;
    }
    io->iovs = const_cast<iovec *>(iov);
    io->iovcnt = iovcnt;
    dispatch(io);
    return 0;
}

int submit_buf(Desc *d, thread::IoChannel *ch, IoType type, void *buf, uint64_t offset,
               uint64_t num, IoCallback cb, void *cb_arg) {
    int rc;
    BdevIo *io = prepare(d, ch, type, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    io->priv->iov = {buf, num * io->bdev->block_size};
    if (!iovs_ok(type, &io->priv->iov, 1, io->priv->iov.iov_len)) {
        free_io(io);
        return -EINVAL;
    }
    io->iovs = &io->priv->iov;
    io->iovcnt = 1;
    dispatch(io);
    return 0;
}

int submit_plain(Desc *d, thread::IoChannel *ch, IoType type, uint64_t offset, uint64_t num,
                 IoCallback cb, void *cb_arg) {
    int rc;
    BdevIo *io = prepare(d, ch, type, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    if (!io->bdev->ops->supports(type)) {
        free_io(io);
        return -ENOTSUP;
    }
    dispatch(io);
    return 0;
}

}  // namespace

void dispatch(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    BdevChannel *bc = p->ch;
    p->tracked = true;
    p->track_type = io->type;
    p->track_offset = io->offset_blocks;
    p->track_num = io->num_blocks;
    p->track_prev = nullptr;
    p->track_next = bc->tracked_head;
    if (bc->tracked_head != nullptr) {
        bc->tracked_head->priv->track_prev = io;
    }
    bc->tracked_head = io;
    // QoS holds it (and its channel's poller executes it) when over budget.
    if (bc->qos != nullptr && !qos_admit(io)) {
        return;
    }
    execute(io);
}

void execute(BdevIo *io) {
    BdevChannel *bc = io->priv->ch;
    if (bc->frozen) {
        complete_later(io, nvme_status::kAbortedSqDeletion);
        return;
    }
    if (bc->num_ranges != 0 && lock_holds(io)) {
        return;
    }
    if (buf_needed(io) && buf_wait(io)) {
        return;
    }
    submit_by_type(io);
}

void submit_by_type(BdevIo *io) {
    io->priv->stage = IoStage::Executing;
    switch (io->type) {
        case IoType::Read:
        case IoType::Write:
            start_rw(io);
            break;
        case IoType::WriteZeroes:
            if (io->bdev->ops->supports(IoType::WriteZeroes)) {
                start(io);
            } else {
                start_write_zeroes_emulated(io);
            }
            break;
        case IoType::CompareAndWrite:
            start_compare_and_write(io);
            break;
        default:
            start(io);
            break;
    }
}

void start(BdevIo *io) {
    BdevChannel *bc = io->priv->ch;
    if (bc->frozen) {
        complete_later(io, nvme_status::kAbortedSqDeletion);
        return;
    }
    io->priv->submit_tsc = thread::poll_ticks();
    ++bc->outstanding;
    io->bdev->ops->submit(bc->module_ch, io);
}

void finish(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    buf_unbounce(io);
    if (p->tracked) {
        BdevChannel *bc = p->ch;
        p->tracked = false;
        p->stage = IoStage::Idle;
        if (p->track_prev != nullptr) {
            p->track_prev->priv->track_next = p->track_next;
        } else {
            bc->tracked_head = p->track_next;
        }
        if (p->track_next != nullptr) {
            p->track_next->priv->track_prev = p->track_prev;
        }
        if (bc->num_ranges != 0 && is_write_type(io->type)) {
            lock_write_finished(bc);
        }
    }
    account(p->ch->stats, io, thread::poll_ticks() - p->submit_tsc, p->status.ok());
    p->cb(io, p->status.ok(), p->cb_arg);
}

void IoStats::add(const IoStats &o) {
    bytes_read += o.bytes_read;
    num_read_ops += o.num_read_ops;
    bytes_written += o.bytes_written;
    num_write_ops += o.num_write_ops;
    bytes_unmapped += o.bytes_unmapped;
    num_unmap_ops += o.num_unmap_ops;
    bytes_copied += o.bytes_copied;
    num_copy_ops += o.num_copy_ops;
    read_latency_ticks += o.read_latency_ticks;
    write_latency_ticks += o.write_latency_ticks;
    unmap_latency_ticks += o.unmap_latency_ticks;
    max_read_latency_ticks = std::max(max_read_latency_ticks, o.max_read_latency_ticks);
    min_read_latency_ticks = std::min(min_read_latency_ticks, o.min_read_latency_ticks);
    max_write_latency_ticks = std::max(max_write_latency_ticks, o.max_write_latency_ticks);
    min_write_latency_ticks = std::min(min_write_latency_ticks, o.min_write_latency_ticks);
    num_other_ops += o.num_other_ops;
    io_errors += o.io_errors;
}

void io_complete(BdevIo *io, NvmeStatus status) {
    BdevIo::Private *p = io->priv;
    BdevChannel *bc = p->ch;
    --bc->outstanding;
    p->status = status;
    if (p->on_done != nullptr) {
        p->on_done(io);
        return;
    }
    finish(io);
}

NvmeStatus io_status(const BdevIo *io) {
    return io->priv->status;
}
IoType io_type(const BdevIo *io) {
    return io->type;
}

int read(Desc *d, thread::IoChannel *ch, void *buf, uint64_t offset, uint64_t num, IoCallback cb,
         void *cb_arg) {
    return submit_buf(d, ch, IoType::Read, buf, offset, num, cb, cb_arg);
}
int readv(Desc *d, thread::IoChannel *ch, const iovec *iov, int iovcnt, uint64_t offset,
          uint64_t num, IoCallback cb, void *cb_arg) {
    return submit_vec(d, ch, IoType::Read, iov, iovcnt, offset, num, cb, cb_arg);
}
int write(Desc *d, thread::IoChannel *ch, void *buf, uint64_t offset, uint64_t num, IoCallback cb,
          void *cb_arg) {
    return submit_buf(d, ch, IoType::Write, buf, offset, num, cb, cb_arg);
}
int writev(Desc *d, thread::IoChannel *ch, const iovec *iov, int iovcnt, uint64_t offset,
           uint64_t num, IoCallback cb, void *cb_arg) {
    return submit_vec(d, ch, IoType::Write, iov, iovcnt, offset, num, cb, cb_arg);
}
int unmap(Desc *d, thread::IoChannel *ch, uint64_t offset, uint64_t num, IoCallback cb,
          void *cb_arg) {
    return submit_plain(d, ch, IoType::Unmap, offset, num, cb, cb_arg);
}
int flush(Desc *d, thread::IoChannel *ch, uint64_t offset, uint64_t num, IoCallback cb,
          void *cb_arg) {
    return submit_plain(d, ch, IoType::Flush, offset, num, cb, cb_arg);
}
int comparev(Desc *d, thread::IoChannel *ch, const iovec *iov, int iovcnt, uint64_t offset,
             uint64_t num, IoCallback cb, void *cb_arg) {
    if (!bdev_channel(ch)->bdev->ops->supports(IoType::Compare)) {
        return -ENOTSUP;
    }
    return submit_vec(d, ch, IoType::Compare, iov, iovcnt, offset, num, cb, cb_arg);
}

int write_zeroes(Desc *d, thread::IoChannel *ch, uint64_t offset, uint64_t num, IoCallback cb,
                 void *cb_arg) {
    Bdev *b = bdev_channel(ch)->bdev;
    if (!b->ops->supports(IoType::WriteZeroes) &&
        (!b->ops->supports(IoType::Write) || zero_buffer_size() < b->block_size)) {
        return -ENOTSUP;
    }
    int rc;
    BdevIo *io = prepare(d, ch, IoType::WriteZeroes, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    dispatch(io);
    return 0;
}

void get_iostat(Bdev *b, std::function<void(const IoStats &)> cb) {
    auto sum = std::make_shared<IoStats>();
    {
        std::lock_guard lock(b->state->stats_mu);
        sum->add(b->state->closed_stats);
    }
    thread::for_each_channel(
        b,
        [sum](thread::ChannelIter &it) {
            sum->add(bdev_channel(it.channel())->stats);
            it.next(0);
        },
        [sum, cb = std::move(cb)](int) { cb(*sum); });
}

void get_channel_iostats(Bdev *b, std::function<void(const std::vector<ChannelStats> &)> cb) {
    auto list = std::make_shared<std::vector<ChannelStats>>();
    thread::for_each_channel(
        b,
        [list](thread::ChannelIter &it) {
            thread::Thread *t = thread::channel_thread(it.channel());
            list->push_back({t->id(), t->name(), bdev_channel(it.channel())->stats});
            it.next(0);
        },
        [list, cb = std::move(cb)](int) { cb(*list); });
}

}  // namespace flint::bdev
