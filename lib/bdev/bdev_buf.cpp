// Data buffers the layer provides from iobuf: for reads submitted without a buffer, and
// bounce buffers for iovecs that miss the module's required alignment.

#include <cstring>

#include "bdev_internal.h"
#include "flint/thread/iobuf.h"

namespace flint::bdev {
namespace {

bool misaligned(const BdevIo *io, uint32_t align) {
    for (int i = 0; i < io->iovcnt; ++i) {
        auto base = reinterpret_cast<uintptr_t>(io->iovs[i].iov_base);
        if ((base | io->iovs[i].iov_len) & (align - 1)) {
            return true;
        }
    }
    return false;
}

// Gathers the caller's iovecs into the bounce buffer (writes) or scatters it back (reads).
void bounce_copy(BdevIo *io, bool to_bounce) {
    BdevIo::Private *p = io->priv;
    auto *bounce = static_cast<char *>(p->buf);
    for (int i = 0; i < p->bounce_orig_iovcnt; ++i) {
        const iovec &v = p->bounce_orig_iovs[i];
        if (to_bounce) {
            std::memcpy(bounce, v.iov_base, v.iov_len);
        } else {
            std::memcpy(v.iov_base, bounce, v.iov_len);
        }
        bounce += v.iov_len;
    }
}

void use_buffer(BdevIo *io, void *buf) {
    BdevIo::Private *p = io->priv;
    p->buf = buf;
    if (p->bounce) {
        p->bounce_orig_iovs = io->iovs;
        p->bounce_orig_iovcnt = io->iovcnt;
        p->bounce_iov = {buf, p->buf_len};
        io->iovs = &p->bounce_iov;
        io->iovcnt = 1;
        if (io->type == IoType::Write) {
            bounce_copy(io, true);
        }
    } else {
        // Into the layer's own iovec: the caller's array stays as it was.
        p->iov = {buf, p->buf_len};
        io->iovs = &p->iov;
        io->iovcnt = 1;
    }
}

void buffer_arrived(thread::IobufEntry *entry, void *buf) {
    auto *io = static_cast<BdevIo *>(entry->cb_arg);
    use_buffer(io, buf);
    submit_by_type(io);
}

}  // namespace

bool buf_needed(const BdevIo *io) {
    if (io->type != IoType::Read && io->type != IoType::Write) {
        return false;
    }
    if (io->iovs[0].iov_base == nullptr) {
        return true;
    }
    uint32_t align = io->bdev->required_alignment;
    return align > 1 && misaligned(io, align);
}

bool buf_wait(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    bool bounce = io->iovs[0].iov_base != nullptr;
    if (!p->ch->mgmt->iobuf.initialized()) {
        complete_later(io, nvme_status::kInvalidField);
        return true;
    }
    if (io_bytes(io) > thread::iobuf_get_options().large_bufsize) {
        // A read without a buffer is refused this large at submission.
        if (bounce) {
            start_bounce_split(io);
        } else {
            complete_later(io, nvme_status::kInvalidField);
        }
        return true;
    }
    p->bounce = bounce;
    p->buf_len = io_bytes(io);
    thread::IobufChannel &ch = p->ch->mgmt->iobuf;
    p->buf_entry.cb_arg = io;
    void *buf = ch.get(p->buf_len, &p->buf_entry, buffer_arrived);
    if (buf != nullptr) {
        use_buffer(io, buf);
        return false;
    }
    p->stage = IoStage::BufWait;
    return true;
}

void buf_abort(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    p->ch->mgmt->iobuf.abort(&p->buf_entry, p->buf_len);
    p->buf_len = 0;
}

void buf_unbounce(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    if (!p->bounce || p->buf_len == 0) {
        return;
    }
    if (io->type == IoType::Read && p->status.ok()) {
        bounce_copy(io, false);
    }
    io->iovs = p->bounce_orig_iovs;
    io->iovcnt = p->bounce_orig_iovcnt;
    buf_release(io);
}

void buf_release(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    p->ch->mgmt->iobuf.put(p->buf, p->buf_len);
    p->buf = nullptr;
    p->buf_len = 0;
}

}  // namespace flint::bdev
