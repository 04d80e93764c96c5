// The bdev data path: per-thread channels with preallocated bdev_ios, submission,
// completion, statistics, write zeroes emulation and reset.

#include <cerrno>
#include <cstring>
#include <memory>
#include <new>

#include "bdev_internal.h"
#include "flint/util/log.h"

namespace flint::bdev {
namespace {

std::atomic<uint64_t> g_ios_in_pools{0};

void push_free(BdevChannel *bc, BdevIo *io) {
    io->priv->next_free = bc->free_list;
    bc->free_list = io;
}

BdevIo *pop_free(BdevChannel *bc) {
    BdevIo *io = bc->free_list;
    if (io != nullptr) {
        bc->free_list = io->priv->next_free;
    }
    return io;
}

// Completes on a later turn of this thread: never inside the submit call.
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

bool is_write_type(IoType t) {
    return t == IoType::Write || t == IoType::Unmap || t == IoType::WriteZeroes ||
           t == IoType::CompareAndWrite;
}

// Common checks and setup. Returns the bdev_io to submit, or nullptr with *rc set.
BdevIo *prepare(Desc *d, thread::IoChannel *ch, IoType type, uint64_t offset, uint64_t num,
                IoCallback cb, void *cb_arg, int *rc) {
    BdevChannel *bc = bdev_channel(ch);
    Bdev *b = bc->bdev;
    if (b->state->removing.load(std::memory_order_relaxed)) {
        *rc = -ENODEV;
        return nullptr;
    }
    if (is_write_type(type) && !d->write) {
        *rc = -EBADF;
        return nullptr;
    }
    uint64_t size = b->state->num_blocks.load(std::memory_order_relaxed);
    if (type != IoType::Reset && (num == 0 || offset >= size || num > size - offset)) {
        *rc = -EINVAL;
        return nullptr;
    }
    BdevIo *io = pop_free(bc);
    if (io == nullptr) {
        *rc = -ENOMEM;
        return nullptr;
    }
    io->type = type;
    io->offset_blocks = offset;
    io->num_blocks = num;
    io->iovs = nullptr;
    io->iovcnt = 0;
    BdevIo::Private *p = io->priv;
    p->cb = cb;
    p->cb_arg = cb_arg;
    p->on_done = nullptr;
    p->status = nvme_status::kSuccess;
    *rc = 0;
    return io;
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

// ---- chunked requests: write zeroes emulation and boundary splitting ----
// The same bdev_io is sent to the module once per chunk; on_done runs the next one.

void chunk_begin(BdevIo *io, void (*step)(BdevIo *)) {
    BdevIo::Private *p = io->priv;
    p->on_done = step;
    p->orig_type = io->type;
    p->orig_offset = io->offset_blocks;
    p->orig_blocks = io->num_blocks;
    p->orig_iovs = io->iovs;
    p->orig_iovcnt = io->iovcnt;
    p->chunk_offset = io->offset_blocks;
    p->chunk_remaining = io->num_blocks;
    p->iov_idx = 0;
    p->iov_off = 0;
    p->submit_tsc = thread::poll_ticks();
}

void chunk_submit(BdevIo *io, uint64_t blocks) {
    BdevIo::Private *p = io->priv;
    io->offset_blocks = p->chunk_offset;
    io->num_blocks = blocks;
    p->chunk_offset += blocks;
    p->chunk_remaining -= blocks;
    ++p->ch->outstanding;
    io->bdev->ops->submit(p->ch->module_ch, io);
}

// Reports the whole request, as the caller asked for it.
void chunk_finish(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    io->type = p->orig_type;
    io->offset_blocks = p->orig_offset;
    io->num_blocks = p->orig_blocks;
    io->iovs = p->orig_iovs;
    io->iovcnt = p->orig_iovcnt;
    account(p->ch->stats, io, thread::poll_ticks() - p->submit_tsc, p->status.ok());
    p->cb(io, p->status.ok(), p->cb_arg);
}

void write_zeroes_next(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    uint32_t bs = io->bdev->block_size;
    uint64_t blocks = std::min<uint64_t>(p->chunk_remaining, zero_buffer_size() / bs);
    // One iovec per chunk, so the chunk also keeps to the transfer and segment limits.
    const Bdev *b = io->bdev;
    if (b->max_transfer_blocks != 0) {
        blocks = std::min<uint64_t>(blocks, b->max_transfer_blocks);
    }
    if (b->max_segment_size >= bs) {
        blocks = std::min<uint64_t>(blocks, b->max_segment_size / bs);
    }
    io->type = IoType::Write;
    p->iov = {zero_buffer(), blocks * bs};
    io->iovs = &p->iov;
    io->iovcnt = 1;
    chunk_submit(io, blocks);
}

void write_zeroes_step(BdevIo *io) {
    if (io->priv->status.ok() && io->priv->chunk_remaining > 0) {
        write_zeroes_next(io);
    } else {
        chunk_finish(io);
    }
}

// Carves the next chunk out of the caller's iovecs within the bdev's limits. Returns false
// if a single block needs more iovecs than a chunk may hold.
bool split_next(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    const Bdev *b = io->bdev;
    uint32_t bs = b->block_size;
    uint64_t blocks = p->chunk_remaining;
    if (b->optimal_io_boundary != 0) {
        blocks = std::min<uint64_t>(
            blocks, b->optimal_io_boundary - p->chunk_offset % b->optimal_io_boundary);
    }
    if (b->max_transfer_blocks != 0) {
        blocks = std::min<uint64_t>(blocks, b->max_transfer_blocks);
    }
    int max_segs = BdevIo::Private::kSplitIovs;
    if (b->max_num_segments != 0) {
        max_segs = std::min<int>(max_segs, static_cast<int>(b->max_num_segments));
    }
    uint64_t max_seg = b->max_segment_size != 0 ? b->max_segment_size : UINT64_MAX;
    uint64_t want = blocks * bs;
    uint64_t got = 0;
    int n = 0;
    int idx = p->iov_idx;
    size_t off = p->iov_off;
    while (got < want && n < max_segs) {
        const iovec &src = p->orig_iovs[idx];
        size_t len = std::min<uint64_t>({src.iov_len - off, want - got, max_seg});
        p->split_iov[n++] = {static_cast<char *>(src.iov_base) + off, len};
        got += len;
        off += len;
        if (off == src.iov_len) {
            ++idx;
            off = 0;
        }
    }
    if (got < want) {
        // Out of segments: send the whole blocks gathered so far.
        uint64_t fit = got / bs;
        if (fit == 0) {
            return false;
        }
        uint64_t excess = got - fit * bs;
        while (excess > 0) {  // give back the partial block at the end
            iovec &last = p->split_iov[n - 1];
            size_t cut = std::min<uint64_t>(excess, last.iov_len);
            last.iov_len -= cut;
            excess -= cut;
            if (last.iov_len == 0) {
                --n;
            }
            if (off >= cut) {
                off -= cut;
            } else {
                --idx;
                off = p->orig_iovs[idx].iov_len - (cut - off);
            }
        }
        blocks = fit;
    }
    p->iov_idx = idx;
    p->iov_off = off;
    io->iovs = p->split_iov;
    io->iovcnt = n;
    chunk_submit(io, blocks);
    return true;
}

void split_step(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    if (p->status.ok() && p->chunk_remaining > 0) {
        if (split_next(io)) {
            return;
        }
        p->status = nvme_status::kInvalidField;
    }
    chunk_finish(io);
}

// True if a read or write must be split to fit the bdev's limits.
bool needs_split(const BdevIo *io) {
    const Bdev *b = io->bdev;
    uint64_t off = io->offset_blocks, num = io->num_blocks;
    if (b->optimal_io_boundary != 0 &&
        off / b->optimal_io_boundary != (off + num - 1) / b->optimal_io_boundary) {
        return true;
    }
    if (b->max_transfer_blocks != 0 && num > b->max_transfer_blocks) {
        return true;
    }
    if (b->max_num_segments != 0 && static_cast<uint32_t>(io->iovcnt) > b->max_num_segments) {
        return true;
    }
    if (b->max_segment_size != 0) {
        for (int i = 0; i < io->iovcnt; ++i) {
            if (io->iovs[i].iov_len > b->max_segment_size) {
                return true;
            }
        }
    }
    return false;
}

// Starts a read or write, split into chunks when it does not fit the bdev's limits.
void start_rw(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    if (p->ch->frozen || !needs_split(io)) {
        start(io);
        return;
    }
    chunk_begin(io, split_step);
    if (!split_next(io)) {
        complete_later(io, nvme_status::kInvalidField);
    }
}

bool iov_covers(const iovec *iov, int iovcnt, uint64_t bytes) {
    if (iov == nullptr || iovcnt <= 0) {
        return false;
    }
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; ++i) {
        total += iov[i].iov_len;
    }
    return total == bytes;
}

int submit_vec(Desc *d, thread::IoChannel *ch, IoType type, const iovec *iov, int iovcnt,
               uint64_t offset, uint64_t num, IoCallback cb, void *cb_arg) {
    int rc;
    BdevIo *io = prepare(d, ch, type, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    if (!iov_covers(iov, iovcnt, num * io->bdev->block_size)) {
        free_io(io);
        return -EINVAL;
    }
    io->iovs = const_cast<iovec *>(iov);
    io->iovcnt = iovcnt;
    if (type == IoType::Read || type == IoType::Write) {
        start_rw(io);
    } else {
        start(io);
    }
    return 0;
}

int submit_buf(Desc *d, thread::IoChannel *ch, IoType type, void *buf, uint64_t offset,
               uint64_t num, IoCallback cb, void *cb_arg) {
    int rc;
    BdevIo *io = prepare(d, ch, type, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    if (buf == nullptr) {
        free_io(io);
        return -EINVAL;
    }
    io->priv->iov = {buf, num * io->bdev->block_size};
    io->iovs = &io->priv->iov;
    io->iovcnt = 1;
    start_rw(io);
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
    start(io);
    return 0;
}

}  // namespace

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

Options &options() {
    static Options o;
    return o;
}

int channel_create(Bdev *b, void *ctx) {
    auto *bc = new (ctx) BdevChannel{};
    bc->bdev = b;
    uint32_t n = options().bdev_io_cache_size;
    if (g_ios_in_pools.fetch_add(n) + n > options().bdev_io_pool_size) {
        g_ios_in_pools.fetch_sub(n);
        FLINT_ERRLOG(
            "bdev '%s': bdev_io_pool_size (%u) exhausted; raise it with "
            "bdev_set_options",
            b->name.c_str(), options().bdev_io_pool_size);
        bc->~BdevChannel();
        return -ENOMEM;
    }
    bc->pool_size = n;
    bc->module_ch = thread::get_io_channel(b->ops->io_device());
    if (bc->module_ch == nullptr) {
        g_ios_in_pools.fetch_sub(n);
        bc->~BdevChannel();
        return -ENOMEM;
    }
    bc->ios.reset(new (std::nothrow) BdevIo[n]);
    bc->privs.reset(new (std::nothrow) BdevIo::Private[n]);
    if (!bc->ios || !bc->privs) {
        FLINT_ERRLOG("bdev '%s': cannot allocate %u bdev_ios for a channel", b->name.c_str(), n);
        thread::put_io_channel(bc->module_ch);
        g_ios_in_pools.fetch_sub(n);
        bc->~BdevChannel();
        return -ENOMEM;
    }
    for (uint32_t i = n; i-- > 0;) {
        BdevIo *io = &bc->ios[i];
        io->bdev = b;
        io->priv = &bc->privs[i];
        io->priv->ch = bc;
        push_free(bc, io);
    }
    return 0;
}

void channel_destroy(Bdev *b, void *ctx) {
    auto *bc = static_cast<BdevChannel *>(ctx);
    if (bc->outstanding != 0) {
        FLINT_ERRLOG("bdev '%s': channel destroyed with %lu I/O outstanding", b->name.c_str(),
                     static_cast<unsigned long>(bc->outstanding));
    }
    {
        std::lock_guard lock(b->state->stats_mu);
        b->state->closed_stats.add(bc->stats);
    }
    thread::put_io_channel(bc->module_ch);
    g_ios_in_pools.fetch_sub(bc->pool_size);
    bc->~BdevChannel();
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
    account(bc->stats, io, thread::poll_ticks() - p->submit_tsc, status.ok());
    p->cb(io, status.ok(), p->cb_arg);
}

void free_io(BdevIo *io) {
    BdevChannel *bc = io->priv->ch;
    push_free(bc, io);
    if (bc->wait_head != nullptr) {
        // Hand the freed bdev_io to the oldest waiter; its submit takes it.
        IoWaitEntry *e = bc->wait_head;
        bc->wait_head = e->next;
        if (bc->wait_head == nullptr) {
            bc->wait_tail = nullptr;
        }
        e->next = nullptr;
        e->cb(e->cb_arg);
    }
}

int queue_io_wait(thread::IoChannel *ch, IoWaitEntry *entry) {
    BdevChannel *bc = bdev_channel(ch);
    if (entry == nullptr || entry->cb == nullptr || bc->free_list != nullptr) {
        return -EINVAL;
    }
    entry->next = nullptr;
    if (bc->wait_tail != nullptr) {
        bc->wait_tail->next = entry;
    } else {
        bc->wait_head = entry;
    }
    bc->wait_tail = entry;
    return 0;
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
    if (b->ops->supports(IoType::WriteZeroes)) {
        return submit_plain(d, ch, IoType::WriteZeroes, offset, num, cb, cb_arg);
    }
    if (!b->ops->supports(IoType::Write) || zero_buffer_size() < b->block_size) {
        return -ENOTSUP;
    }
    int rc;
    BdevIo *io = prepare(d, ch, IoType::WriteZeroes, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    BdevIo::Private *p = io->priv;
    if (p->ch->frozen) {
        complete_later(io, nvme_status::kAbortedSqDeletion);
        return 0;
    }
    chunk_begin(io, write_zeroes_step);
    write_zeroes_next(io);
    return 0;
}

// ---- reset: freeze every channel, drain, reset the device, thaw ----

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
            bdev_channel(it.channel())->frozen = frozen;
            it.next(0);
        },
        [then = std::move(then)](int) { then(); });
}

void reset_done(BdevIo *io) {
    Bdev *b = io->bdev;
    set_frozen(b, false, [io, b] {
        b->state->reset_in_progress.store(false);
        BdevIo::Private *p = io->priv;
        account(p->ch->stats, io, thread::poll_ticks() - p->submit_tsc, p->status.ok());
        p->cb(io, p->status.ok(), p->cb_arg);
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
