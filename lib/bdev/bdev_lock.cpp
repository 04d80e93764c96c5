// LBA range locks and compare-and-write.
//
// A lock is granted on the bdev's lock thread (the one that registered it), so two
// overlapping locks never run at once; granting copies the range into every channel, each
// of which then waits for its overlapping writes in flight to finish. While a range is
// locked, writes that overlap it from any channel are held and run once it is released.

#include <algorithm>
#include <cerrno>

#include "bdev_internal.h"
#include "flint/util/log.h"

namespace flint::bdev {
namespace {

bool overlaps(uint64_t a_off, uint64_t a_num, uint64_t b_off, uint64_t b_num) {
    return a_off < b_off + b_num && b_off < a_off + a_num;
}

bool overlaps(const BdevIo *a, const BdevIo *b) {
    return overlaps(a->priv->track_offset, a->priv->track_num, b->priv->track_offset,
                    b->priv->track_num);
}

thread::Thread *io_thread(const BdevIo *io) {
    return thread::channel_thread(thread::channel_from_ctx(io->priv->ch));
}

// True if a write of bc other than the range's owner passed the lock check inside the
// range: it is at the module, or waits for a bounce buffer and resumes past the check.
bool writes_in_flight(const BdevChannel *bc, const BdevChannel::LockedRange &r) {
    for (BdevIo *io = bc->tracked_head; io != nullptr; io = io->priv->track_next) {
        const BdevIo::Private *p = io->priv;
        bool passed = p->stage == IoStage::Executing || p->stage == IoStage::BufWait;
        if (io != r.owner && passed && is_write_type(p->track_type) &&
            overlaps(p->track_offset, p->track_num, r.offset, r.num)) {
            return true;
        }
    }
    return false;
}

void send_or_log(thread::Thread *t, void (*fn)(void *), void *arg) {
    if (thread::send_msg(t, fn, arg) != 0) {
        FLINT_ERRLOG("bdev range lock: cannot reach thread '%s'", t->name().c_str());
    }
}

// ---- on each channel's thread ----

void add_range(thread::ChannelIter &it, BdevIo *owner) {
    BdevChannel *bc = bdev_channel(it.channel());
    for (int i = 0; i < bc->num_ranges; ++i) {
        if (bc->ranges[i].owner == owner) {  // created during the grant: it has it already
            it.next(0);
            return;
        }
    }
    BdevChannel::LockedRange &r = bc->ranges[bc->num_ranges++];
    r = {owner->priv->track_offset, owner->priv->track_num, owner, nullptr};
    if (writes_in_flight(bc, r)) {
        r.waiting = &it;  // lock_write_finished() goes on
        return;
    }
    it.next(0);
}

void remove_range(thread::ChannelIter &it, const BdevIo *owner) {
    BdevChannel *bc = bdev_channel(it.channel());
    for (int i = 0; i < bc->num_ranges; ++i) {
        if (bc->ranges[i].owner == owner) {
            bc->ranges[i] = bc->ranges[--bc->num_ranges];
            break;
        }
    }
    // Rerun what the range held; anything another range still covers queues again.
    BdevIo *held = bc->lock_held_head;
    bc->lock_held_head = bc->lock_held_tail = nullptr;
    while (held != nullptr) {
        BdevIo *next = held->priv->queue_next;
        held->priv->stage = IoStage::Executing;
        execute(held);
        held = next;
    }
    it.next(0);
}

// ---- on the lock thread ----

void grant(BdevIo *owner);

bool conflicts(const std::vector<BdevIo *> &list, const BdevIo *io, size_t upto) {
    for (size_t i = 0; i < upto && i < list.size(); ++i) {
        if (overlaps(list[i], io)) {
            return true;
        }
    }
    return false;
}

void lock_request(void *arg) {
    auto *io = static_cast<BdevIo *>(arg);
    BdevState *st = io->bdev->state.get();
    // Behind any overlapping waiter too, so a stream of locks cannot starve an older one.
    if (conflicts(st->active_locks, io, st->active_locks.size()) ||
        conflicts(st->pending_locks, io, st->pending_locks.size()) ||
        st->active_locks.size() >= BdevChannel::kMaxLockedRanges) {
        st->pending_locks.push_back(io);
        return;
    }
    grant(io);
}

void caw_locked(void *arg);
void caw_done(void *arg);

void grant(BdevIo *owner) {
    BdevState *st = owner->bdev->state.get();
    st->active_locks.push_back(owner);
    {
        std::lock_guard lock(st->granted_mu);
        st->granted.push_back(owner);
    }
    thread::for_each_channel(
        owner->bdev, [owner](thread::ChannelIter &it) { add_range(it, owner); },
        [owner](int) { send_or_log(io_thread(owner), caw_locked, owner); });
}

void unlock_request(void *arg) {
    auto *owner = static_cast<BdevIo *>(arg);
    {
        // Before the walk: a channel created during it must not take the range, as the
        // walk may not visit it.
        BdevState *st = owner->bdev->state.get();
        std::lock_guard lock(st->granted_mu);
        std::erase(st->granted, owner);
    }
    thread::for_each_channel(
        owner->bdev, [owner](thread::ChannelIter &it) { remove_range(it, owner); },
        [owner](int) {
            BdevState *st = owner->bdev->state.get();
            std::erase(st->active_locks, owner);
            // Grant waiters in order while they conflict with nothing before them.
            auto &pend = st->pending_locks;
            for (size_t i = 0; i < pend.size();) {
                BdevIo *w = pend[i];
                if (st->active_locks.size() < BdevChannel::kMaxLockedRanges &&
                    !conflicts(st->active_locks, w, st->active_locks.size()) &&
                    !conflicts(pend, w, i)) {
                    pend.erase(pend.begin() + static_cast<std::ptrdiff_t>(i));
                    grant(w);
                } else {
                    ++i;
                }
            }
            send_or_log(io_thread(owner), caw_done, owner);
        });
}

// ---- compare-and-write on the submitting thread ----

void caw_unlock(BdevIo *io) {
    send_or_log(io->bdev->state->lock_thread, unlock_request, io);
}

void caw_write_done(BdevIo *io) {
    caw_unlock(io);
}

void caw_compare_done(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    if (!p->status.ok()) {
        caw_unlock(io);
        return;
    }
    io->type = IoType::Write;
    io->iovs = p->write_iovs;
    io->iovcnt = p->write_iovcnt;
    p->on_done = caw_write_done;
    start(io);
}

void caw_locked(void *arg) {
    auto *io = static_cast<BdevIo *>(arg);
    BdevIo::Private *p = io->priv;
    p->stage = IoStage::Executing;
    io->type = IoType::Compare;
    io->iovs = p->cmp_iovs;
    io->iovcnt = p->cmp_iovcnt;
    p->on_done = caw_compare_done;
    start(io);
}

void caw_done(void *arg) {
    auto *io = static_cast<BdevIo *>(arg);
    BdevIo::Private *p = io->priv;
    io->type = IoType::CompareAndWrite;
    io->iovs = p->write_iovs;
    io->iovcnt = p->write_iovcnt;
    p->on_done = nullptr;
    finish(io);
}

}  // namespace

bool lock_holds(BdevIo *io) {
    BdevIo::Private *p = io->priv;
    if (!is_write_type(io->type)) {
        return false;
    }
    BdevChannel *bc = p->ch;
    for (int i = 0; i < bc->num_ranges; ++i) {
        const BdevChannel::LockedRange &r = bc->ranges[i];
        if (r.owner != io && overlaps(p->track_offset, p->track_num, r.offset, r.num)) {
            p->stage = IoStage::LockHeld;
            p->queue_next = nullptr;
            if (bc->lock_held_tail != nullptr) {
                bc->lock_held_tail->priv->queue_next = io;
            } else {
                bc->lock_held_head = io;
            }
            bc->lock_held_tail = io;
            return true;
        }
    }
    return false;
}

bool lock_unqueue(BdevChannel *bc, BdevIo *io) {
    BdevIo *prev = nullptr;
    for (BdevIo *cur = bc->lock_held_head; cur != nullptr; cur = cur->priv->queue_next) {
        if (cur == io) {
            if (prev != nullptr) {
                prev->priv->queue_next = cur->priv->queue_next;
            } else {
                bc->lock_held_head = cur->priv->queue_next;
            }
            if (bc->lock_held_tail == cur) {
                bc->lock_held_tail = prev;
            }
            return true;
        }
        prev = cur;
    }
    return false;
}

void lock_channel_init(BdevChannel *bc) {
    BdevState *st = bc->bdev->state.get();
    std::lock_guard lock(st->granted_mu);
    for (const BdevIo *owner : st->granted) {
        // New: no write of this channel is in flight to wait for.
        bc->ranges[bc->num_ranges++] = {owner->priv->track_offset, owner->priv->track_num, owner,
                                        nullptr};
    }
}

void lock_write_finished(BdevChannel *bc) {
    for (int i = 0; i < bc->num_ranges; ++i) {
        BdevChannel::LockedRange &r = bc->ranges[i];
        if (r.waiting != nullptr && !writes_in_flight(bc, r)) {
            thread::ChannelIter *it = r.waiting;
            r.waiting = nullptr;
            it->next(0);
        }
    }
}

void start_compare_and_write(BdevIo *io) {
    io->priv->stage = IoStage::Locking;
    send_or_log(io->bdev->state->lock_thread, lock_request, io);
}

int comparev_and_writev(Desc *d, thread::IoChannel *ch, const iovec *cmp_iov, int cmp_iovcnt,
                        const iovec *write_iov, int write_iovcnt, uint64_t offset, uint64_t num,
                        IoCallback cb, void *cb_arg) {
    const Bdev *b = bdev_channel(ch)->bdev;
    if (!b->ops->supports(IoType::Compare) || !b->ops->supports(IoType::Write)) {
        return -ENOTSUP;
    }
    int rc;
    BdevIo *io = prepare(d, ch, IoType::CompareAndWrite, offset, num, cb, cb_arg, &rc);
    if (io == nullptr) {
        return rc;
    }
    uint64_t bytes = num * b->block_size;
    BdevIo::Private *p = io->priv;
    p->cmp_iovs = const_cast<iovec *>(cmp_iov);
    p->cmp_iovcnt = cmp_iovcnt;
    p->write_iovs = const_cast<iovec *>(write_iov);
    p->write_iovcnt = write_iovcnt;
    io->iovs = p->cmp_iovs;
    io->iovcnt = cmp_iovcnt;
    bool ok = num <= b->acwu && iov_covers(cmp_iov, cmp_iovcnt, bytes) &&
              iov_covers(write_iov, write_iovcnt, bytes) && !needs_split(io);
    io->iovs = p->write_iovs;
    io->iovcnt = write_iovcnt;
    if (!ok || needs_split(io)) {
        free_io(io);
        return -EINVAL;
    }
    dispatch(io);
    return 0;
}

}  // namespace flint::bdev
