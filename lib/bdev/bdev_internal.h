#pragma once
// Bookkeeping shared by the bdev layer's files.

#include <atomic>
#include <mutex>

#include "flint/bdev/module.h"
#include "flint/thread/iobuf.h"

namespace flint::bdev {

class Desc {
public:
    Bdev *bdev;
    bool write;
    EventCallback on_event;
    thread::Thread *thread;
    bool claimed = false;
};

// bdev_qos.cpp: a bdev's QoS rate limits and the budgets its channels share.
struct Qos;
struct QosDeleter {
    void operator()(Qos *q) const;
};

struct BdevState {
    std::atomic<bool> removing{false};
    std::atomic<uint64_t> num_blocks{0};  // read on the data path; Bdev::num_blocks mirrors it
    std::vector<Desc *> descs;            // under g_mu
    Desc *claim = nullptr;                // under g_mu
    std::string claim_owner;              // under g_mu
    std::function<void(int)> unregister_done;
    std::atomic<bool> reset_in_progress{false};
    std::mutex stats_mu;  // control path: channels add their stats here when destroyed
    IoStats closed_stats;
    // LBA range locks, on lock_thread only: the active ones and those waiting for them.
    thread::Thread *lock_thread = nullptr;  // the thread that registered the bdev
    std::vector<BdevIo *> active_locks;
    std::vector<BdevIo *> pending_locks;
    // The granted locks again, from the start of their grant to the start of their release,
    // for channel_create on any thread to copy: a channel created meanwhile knows them.
    std::mutex granted_mu;
    std::vector<const BdevIo *> granted;
    // QoS limits, nullptr when none: set on the app thread and read by channel_create, both
    // under registry_mutex().
    std::unique_ptr<Qos, QosDeleter> qos;
};

// Where a request is between dispatch() and its completion.
enum class IoStage : uint8_t {
    Idle,       // not dispatched (or an I/O the layer drives itself)
    QosHeld,    // waiting for QoS budget
    LockHeld,   // a write waiting for an LBA range lock of another request
    BufWait,    // waiting for a data or bounce buffer from iobuf
    Locking,    // compare-and-write waiting for its own range lock
    Executing,  // at the module (or between steps the layer drives)
};

struct BdevChannel;

struct BdevIo::Private {
    IoCallback cb;
    void *cb_arg;
    BdevChannel *ch;
    NvmeStatus status;
    uint64_t submit_tsc;
    BdevIo *next_free;
    // Set for I/O the layer drives itself (emulation, reset): runs instead of cb.
    void (*on_done)(BdevIo *io);
    iovec iov;  // single-buffer read/write
    // Split requests (bdev_split.cpp: reads and writes beyond the bdev's limits, emulated
    // write zeroes) run as child bdev_ios, several at once. The parent keeps the caller's
    // request and tracks where the next child starts (in blocks, and in the caller's iovecs)
    // and how many children are at the module; each child has its own slice of iovecs.
    uint64_t chunk_offset;
    uint64_t chunk_remaining;
    int iov_idx;     // the caller's iovec the next child starts in
    size_t iov_off;  // and the byte offset within it
    uint32_t split_outstanding;
    bool split_looping;      // the parent is submitting children (one done inline just counts)
    IoWaitEntry split_wait;  // the parent waits here for a bdev_io when no child is out
    BdevIo *split_parent;    // set in a child
    bool splitting;          // a parent, from its first child until it completes
    BdevIo *split_children;  // a parent's children out (at the module or waiting for a buffer)
    BdevIo *sibling_prev;    // a child's links in that list
    BdevIo *sibling_next;
    // A bounced parent too large for one bounce buffer: each child carries at most this
    // many blocks and bounces on its own. 0 for any other split.
    uint64_t split_bounce_blocks;
    static constexpr int kSplitIovs = 16;
    iovec split_iov[kSplitIovs];
    // Requests dispatched on a channel are on its tracked list until finish(), so range
    // locks can wait for overlapping writes and abort can find its targets.
    IoStage stage;
    bool tracked;
    IoType track_type;  // the request as dispatched (steps and chunks change the fields)
    uint64_t track_offset;
    uint64_t track_num;
    BdevIo *track_prev;
    BdevIo *track_next;
    BdevIo *queue_next;  // link in the channel's lock-held queue
    BdevIo *qos_next;    // link in the channel's QoS-held queue
    // Compare-and-write: the buffers of each step.
    iovec *cmp_iovs;
    int cmp_iovcnt;
    iovec *write_iovs;
    int write_iovcnt;
    // A buffer from iobuf (buf_len != 0 while held): the data of a read submitted without
    // one, kept until free_io, or a bounce buffer, given back in finish().
    thread::IobufEntry buf_entry;
    void *buf;
    uint64_t buf_len;
    bool bounce;
    iovec bounce_iov;
    iovec *bounce_orig_iovs;
    int bounce_orig_iovcnt;
    // Abort: the parent of a per-target abort sent to the module, and the parent's tally.
    BdevIo *abort_parent;
    uint32_t abort_children;
    bool abort_failed;
};

// A thread's share of the bdev layer (bdev_channel.cpp): the channel of a private
// io_device, taken by every BdevChannel of the thread. bdev_ios come from one global pool
// (bdev_io_pool_size); each thread keeps up to bdev_io_cache_size free ones here, so the
// common get and put touch no shared cache line.
struct MgmtChannel {
    BdevIo *cache;           // free bdev_ios, LIFO (the last freed is the warmest)
    uint32_t cache_room;     // bdev_io_cache_size less the bdev_ios cached
    IoWaitEntry *wait_head;  // callers on this thread waiting for a bdev_io, FIFO
    IoWaitEntry *wait_tail;
    // Retries the global pool while there are waiters: a thread whose bdev_ios are all
    // held by others frees nothing itself.
    thread::Poller *retry_poller;
    // The thread's data and bounce buffers (module "bdev"); initialised only when iobuf is.
    thread::IobufChannel iobuf;
};

struct BdevChannel {
    Bdev *bdev;
    thread::IoChannel *module_ch;
    MgmtChannel *mgmt;  // this thread's; a reference is held for the channel's lifetime
    uint64_t outstanding;
    bool frozen;  // a reset is in progress
    IoStats stats;
    BdevIo *tracked_head;  // dispatched and not finished (doubly linked)
    // The bdev's active LBA range locks as this channel knows them (at most
    // kMaxLockedRanges; the lock thread admits no more) and the writes they hold, FIFO.
    struct LockedRange {
        uint64_t offset;
        uint64_t num;
        const BdevIo *owner;
        thread::ChannelIter *waiting;  // lock step waiting for overlapping writes to finish
    };
    static constexpr int kMaxLockedRanges = 32;
    LockedRange ranges[kMaxLockedRanges];
    int num_ranges;
    BdevIo *lock_held_head;
    BdevIo *lock_held_tail;
    // QoS: the bdev's limits (nullptr when none: all the data path tests), the I/Os waiting
    // for budget, FIFO, and the poller that admits them as budget comes back.
    Qos *qos;
    BdevIo *qos_head;
    BdevIo *qos_tail;
    thread::Poller *qos_poller;
    // What the channel took of each budget in the current epoch (one per refill): each
    // waiting channel may take an equal share of it.
    static constexpr int kQosLimits = 4;
    uint64_t qos_epoch;
    int64_t qos_taken[kQosLimits];
};

// Registry lock: control path only (open, close, register, claims).
std::mutex &registry_mutex();
// The channel context of a bdev io_channel.
inline BdevChannel *bdev_channel(thread::IoChannel *ch) {
    return static_cast<BdevChannel *>(thread::channel_ctx(ch));
}
// Creates and destroys a bdev's channels (registered as the bdev's io_device callbacks).
int channel_create(Bdev *bdev, void *ctx);
void channel_destroy(Bdev *bdev, void *ctx);
// bdev_channel.cpp: a free bdev_io bound to bc (io->bdev and priv->ch set), from the
// thread's cache or else the global pool; nullptr when none is free, or when the cache is
// empty and callers already wait on this thread (no jumping the queue).
BdevIo *pop_free_io_slow(BdevChannel *bc);
// Inline: every submission takes a bdev_io, almost always from the thread's cache.
inline BdevIo *pop_free_io(BdevChannel *bc) {
    MgmtChannel *m = bc->mgmt;
    BdevIo *io = m->cache;
    if (io == nullptr) [[unlikely]] {
        return pop_free_io_slow(bc);
    }
    m->cache = io->priv->next_free;
    ++m->cache_room;
    io->bdev = bc->bdev;  // bdev_ios are shared by every bdev: bind it to this request
    io->priv->ch = bc;
    return io;
}
// Queues entry on the thread's io-wait queue (the caller checked that none is free).
void queue_wait(MgmtChannel *m, IoWaitEntry *entry);

// bdev_io.cpp: the checks every submission makes and a bdev_io for it, or nullptr with *rc set.
bool is_write_type(IoType t);
// True if there are iovecs, none has a null base, and they add up to exactly bytes.
bool iov_covers(const iovec *iov, int iovcnt, uint64_t bytes);
BdevIo *prepare(Desc *d, thread::IoChannel *ch, IoType type, uint64_t offset, uint64_t num,
                IoCallback cb, void *cb_arg, int *rc);
// The stages of a request. dispatch() runs the stages that may hold a request
// back (and resume it later), then execute(), which sends it to the module by type: start()
// as it is, start_rw() split to the bdev's limits, or start_write_zeroes_emulated().
void dispatch(BdevIo *io);
void execute(BdevIo *io);
void start(BdevIo *io);
// Completes on a later turn of this thread: never inside the submit call.
void complete_later(BdevIo *io, NvmeStatus status);
// Accounts the request in its channel's statistics and calls the user's callback.
void finish(BdevIo *io);
// Sends io to the module by type (after every stage that may hold it back).
void submit_by_type(BdevIo *io);
// bdev_lock.cpp: LBA range locks and compare-and-write.
// True if io is a write held back by another request's range lock (it was queued and runs
// when the lock is released).
bool lock_holds(BdevIo *io);
// A tracked write finished on bc: lock steps waiting for it may go on.
void lock_write_finished(BdevChannel *bc);
// channel_create: the new channel takes the bdev's granted locks.
void lock_channel_init(BdevChannel *bc);
void start_compare_and_write(BdevIo *io);
// Removes io from bc's lock-held queue; false if it is not there.
bool lock_unqueue(BdevChannel *bc, BdevIo *io);
// bdev_buf.cpp: buffers from the thread's iobuf channel.
// True if io is a read without a buffer, or has iovecs that miss required_alignment.
bool buf_needed(const BdevIo *io);
// Gets the buffer: false when io can go on now; true when it waits (its stage is BufWait,
// and it resumes in submit_by_type), was failed (no iobuf, or a block larger than a
// buffer), or went on as a bounce split (start_bounce_split).
bool buf_wait(BdevIo *io);
void buf_abort(BdevIo *io);  // a BufWait request leaves the queue
// finish(): if io holds a bounce buffer, copies a read back and gives the buffer back.
void buf_unbounce(BdevIo *io);
void buf_release(BdevIo *io);  // free_io(): gives back a buffer the layer provided
// Readies a bdev_io the layer sends for a request of its own (a split child, an abort):
// untracked, no buffer, no user callback; on_done runs at its completion. prepare()
// starts every caller's request from this too.
inline void init_child(BdevIo *child, void (*on_done)(BdevIo *io)) {
    BdevIo::Private *c = child->priv;
    c->cb = nullptr;
    c->cb_arg = nullptr;
    c->on_done = on_done;
    c->status = nvme_status::kSuccess;
    c->stage = IoStage::Idle;
    c->tracked = false;
    c->buf_len = 0;  // any buffer is the parent's
    c->bounce = false;
    c->splitting = false;
}
// bdev_split.cpp
// True if a read or write must be split to fit the bdev's limits.
bool needs_split(const BdevIo *io);
void start_rw(BdevIo *io);
void start_write_zeroes_emulated(BdevIo *io);
// Splits a read or write whose iovecs need bouncing but exceed one bounce buffer into
// children that each fit one.
void start_bounce_split(BdevIo *io);

// bdev_qos.cpp: QoS rate limits.
// dispatch(), when bc->qos is set: true if io may go on now; false if it waits on its
// channel for budget (the channel's poller executes it later).
bool qos_admit(BdevIo *io);
// Executes the I/Os bc holds, in order, while the budgets allow and bc has not taken its
// share of the current epoch; returns how many. The channel's poller (tests call it too).
int qos_poll_channel(BdevChannel *bc);
// Executes every I/O bc holds now, budget or not (limits disabled; reset freeze).
void qos_release_held(BdevChannel *bc);
// Removes io from bc's QoS queue; false if it is not there.
bool qos_unqueue(BdevChannel *bc, BdevIo *io);
// Grants `slices` timeslices of budget and starts a new epoch of shares (the refill
// poller's step; tests call it directly).
void qos_refill(Qos *q, uint64_t slices);
// On the channel's thread, from channel_create / channel_destroy.
void qos_channel_init(BdevChannel *bc);
void qos_channel_fini(BdevChannel *bc);
// App thread, once the bdev's channels are all gone (unregister): frees its QoS state.
void qos_free(Bdev *b);
// bdev_get_bdevs' assigned_rate_limits, and the save_config entry (if limits are set).
void qos_limits_json(Bdev *b, Json::Value &out);
void qos_write_config(Bdev *b, Json::Value &config);
void qos_register_rpc();
// Tests: the QoS pollers wait an hour instead of a timeslice, so a test drives the budgets
// with qos_refill() and qos_poll_channel().
void qos_set_manual_clock(bool manual);

// A zeroed DMA buffer for write zeroes emulation and its size.
void *zero_buffer();
size_t zero_buffer_size();
void free_zero_buffer();

}  // namespace flint::bdev
