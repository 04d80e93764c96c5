// Requests the layer runs as child bdev_ios: reads and writes split to the bdev's limits or
// to one bounce buffer each, and write zeroes emulated with writes of a shared zeroed buffer. The
// parent keeps the caller's request; up to kMaxSplitChildren children are at the module at once,
// each with its own slice of the caller's iovecs. The parent completes once, after its last child,
// with the first error any child had, and is accounted as the caller sent it.

#include <algorithm>

#include "bdev_internal.h"

namespace flint::bdev {
namespace {

// Children of one parent at the module at once (SPDK's SPDK_BDEV_MAX_CHILDREN_REQS).
constexpr uint32_t kMaxSplitChildren = 32;

void split_continue(BdevIo *parent, bool from_submit);

// Gathers up to want bytes of the caller's iovecs from the parent's cursor (idx, off) into
// seg, within the segment limits; advances the cursor and returns the bytes gathered.
uint64_t gather(const BdevIo *parent, uint64_t want, iovec *seg, int max_segs, uint64_t max_seg,
                int *n, int *idx, size_t *off) {
    uint64_t got = 0;
    *n = 0;
    while (got < want && *n < max_segs) {
        const iovec &src = parent->iovs[*idx];
        if (*off == src.iov_len) {  // also skips empty iovecs
            ++*idx;
            *off = 0;
            continue;
        }
        size_t len = std::min<uint64_t>({src.iov_len - *off, want - got, max_seg});
        seg[(*n)++] = {static_cast<char *>(src.iov_base) + *off, len};
        got += len;
        *off += len;
    }
    return got;
}

// The parent's next read or write child: as many blocks as the bdev's limits allow, with
// the matching slice of the caller's iovecs. Returns the blocks, or 0 if a single block
// needs more iovecs than a child may carry.
uint64_t carve_rw(BdevIo *parent, BdevIo *child) {
    BdevIo::Private *p = parent->priv;
    const Bdev *b = parent->bdev;
    uint32_t bs = b->block_size;
    uint64_t blocks = p->chunk_remaining;
    if (b->optimal_io_boundary != 0) {
        blocks = std::min<uint64_t>(
            blocks, b->optimal_io_boundary - p->chunk_offset % b->optimal_io_boundary);
    }
    if (b->max_transfer_blocks != 0) {
        blocks = std::min<uint64_t>(blocks, b->max_transfer_blocks);
    }
    if (p->split_bounce_blocks != 0) {
        blocks = std::min<uint64_t>(blocks, p->split_bounce_blocks);
    }
    int max_segs = BdevIo::Private::kSplitIovs;
    if (b->max_num_segments != 0) {
        max_segs = std::min<int>(max_segs, static_cast<int>(b->max_num_segments));
    }
    uint64_t max_seg = b->max_segment_size != 0 ? b->max_segment_size : UINT64_MAX;
    iovec *seg = child->priv->split_iov;
    int n, idx = p->iov_idx;
    size_t off = p->iov_off;
    uint64_t got = gather(parent, blocks * bs, seg, max_segs, max_seg, &n, &idx, &off);
    if (got < blocks * bs) {
        // Out of segments: send the whole blocks gathered. Gathering fewer bytes again
        // yields a prefix of the same segments, and the cursor right after them.
        blocks = got / bs;
        if (blocks == 0) {
            return 0;
        }
        idx = p->iov_idx;
        off = p->iov_off;
        gather(parent, blocks * bs, seg, max_segs, max_seg, &n, &idx, &off);
    }
    p->iov_idx = idx;
    p->iov_off = off;
    child->type = parent->type;
    child->iovs = seg;
    child->iovcnt = n;
    return blocks;
}

// The next write of zeroes: one iovec over the zero buffer, within the bdev's limits.
uint64_t carve_zeroes(BdevIo *parent, BdevIo *child) {
    BdevIo::Private *p = parent->priv;
    const Bdev *b = parent->bdev;
    uint32_t bs = b->block_size;
    uint64_t blocks = std::min<uint64_t>(p->chunk_remaining, zero_buffer_size() / bs);
    if (b->optimal_io_boundary != 0) {
        blocks = std::min<uint64_t>(
            blocks, b->optimal_io_boundary - p->chunk_offset % b->optimal_io_boundary);
    }
    if (b->max_transfer_blocks != 0) {
        blocks = std::min<uint64_t>(blocks, b->max_transfer_blocks);
    }
    if (b->max_segment_size >= bs) {
        blocks = std::min<uint64_t>(blocks, b->max_segment_size / bs);
    }
    child->type = IoType::Write;
    child->priv->split_iov[0] = {zero_buffer(), blocks * bs};
    child->iovs = child->priv->split_iov;
    child->iovcnt = 1;
    return blocks;
}

void complete_parent(BdevIo *parent, bool from_submit) {
    BdevIo::Private *p = parent->priv;
    p->splitting = false;
    if (from_submit) {
        // Never inside the caller's submit call (a failed first child, or a module that
        // completed every child inline).
        complete_later(parent, p->status);
    } else if (p->on_done != nullptr) {
        p->on_done(parent);
    } else {
        finish(parent);
    }
}

void split_child_done(BdevIo *child) {
    buf_unbounce(child);
    BdevIo::Private *c = child->priv;
    BdevIo *parent = c->split_parent;
    BdevIo::Private *p = parent->priv;
    if (c->sibling_prev != nullptr) {
        c->sibling_prev->priv->sibling_next = c->sibling_next;
    } else {
        p->split_children = c->sibling_next;
    }
    if (c->sibling_next != nullptr) {
        c->sibling_next->priv->sibling_prev = c->sibling_prev;
    }
    if (!c->status.ok() && p->status.ok()) {
        p->status = c->status;
    }
    --p->split_outstanding;
    free_io(child);
    if (!p->split_looping) {  // else the parent's submit loop below goes on
        split_continue(parent, false);
    }
}

void split_resume(void *arg) {
    split_continue(static_cast<BdevIo *>(arg), false);
}

// Submits children until the request is covered, kMaxSplitChildren are out, a child fails,
// or no bdev_io is free. Without a free bdev_io, a child's completion goes on; with no child
// out, the parent waits on the thread's io-wait queue. Completes the parent after its last.
void split_continue(BdevIo *parent, bool from_submit) {
    BdevIo::Private *p = parent->priv;
    BdevChannel *bc = p->ch;
    bool zeroes = parent->type == IoType::WriteZeroes;
    p->split_looping = true;
    while (p->chunk_remaining > 0 && p->status.ok() && p->split_outstanding < kMaxSplitChildren) {
        BdevIo *child = pop_free_io(bc);
        if (child == nullptr) {
            break;
        }
        uint64_t blocks = zeroes ? carve_zeroes(parent, child) : carve_rw(parent, child);
        if (blocks == 0) {
            p->status = nvme_status::kInvalidField;
            free_io(child);
            break;
        }
        child->offset_blocks = p->chunk_offset;
        child->num_blocks = blocks;
        p->chunk_offset += blocks;
        p->chunk_remaining -= blocks;
        init_child(child, split_child_done);
        BdevIo::Private *c = child->priv;
        c->split_parent = parent;
        c->sibling_prev = nullptr;
        c->sibling_next = p->split_children;
        if (p->split_children != nullptr) {
            p->split_children->priv->sibling_prev = child;
        }
        p->split_children = child;
        ++p->split_outstanding;
        // A child completed inline only counts (split_looping). One that waits for its
        // bounce buffer resumes in submit_by_type, within the bdev's limits already.
        if (p->split_bounce_blocks == 0 || !buf_needed(child) || !buf_wait(child)) {
            start(child);
        }
    }
    p->split_looping = false;
    if (p->split_outstanding > 0) {
        return;
    }
    if (p->chunk_remaining > 0 && p->status.ok()) {
        queue_wait(bc->mgmt, &p->split_wait);
        return;
    }
    complete_parent(parent, from_submit);
}

void split_begin(BdevIo *io, uint64_t bounce_blocks) {
    BdevIo::Private *p = io->priv;
    p->split_bounce_blocks = bounce_blocks;
    p->splitting = true;
    p->split_children = nullptr;
    p->chunk_offset = io->offset_blocks;
    p->chunk_remaining = io->num_blocks;
    p->iov_idx = 0;
    p->iov_off = 0;
    p->split_outstanding = 0;
    p->split_looping = false;
    p->split_wait.cb = split_resume;
    p->split_wait.cb_arg = io;
    p->submit_tsc = thread::poll_ticks();
    split_continue(io, true);
}

}  // namespace

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

void start_rw(BdevIo *io) {
    if (!needs_split(io)) {
        start(io);
        return;
    }
    split_begin(io, 0);
}

void start_write_zeroes_emulated(BdevIo *io) {
    split_begin(io, 0);
}

void start_bounce_split(BdevIo *io) {
    const Bdev *b = io->bdev;
    // Each child's bounce buffer is its one segment: it must fit a large buffer and the
    // bdev's segment size.
    uint64_t bytes = thread::iobuf_get_options().large_bufsize;
    if (b->max_segment_size != 0) {
        bytes = std::min<uint64_t>(bytes, b->max_segment_size);
    }
    uint64_t blocks = bytes / b->block_size;
    if (blocks == 0) {
        complete_later(io, nvme_status::kInvalidField);
        return;
    }
    io->priv->stage = IoStage::Executing;
    split_begin(io, blocks);
}

}  // namespace flint::bdev
