// Requests the layer runs as a series of chunks on one bdev_io: splitting reads and writes
// to the bdev's limits, and write zeroes emulated with writes of a zeroed buffer.

#include <algorithm>

#include "bdev_internal.h"
#include "flint/util/log.h"

namespace flint::bdev {
namespace {

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
    finish(io);
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
}  // namespace

void start_rw(BdevIo *io) {
    if (!needs_split(io)) {
        start(io);
        return;
    }
    chunk_begin(io, split_step);
    if (!split_next(io)) {
        complete_later(io, nvme_status::kInvalidField);
    }
}

void start_write_zeroes_emulated(BdevIo *io) {
    chunk_begin(io, write_zeroes_step);
    write_zeroes_next(io);
}

}  // namespace flint::bdev
