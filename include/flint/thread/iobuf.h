#pragma once
// iobuf: the shared pools of DMA-safe data buffers, with per-thread caches (SPDK's
// spdk_iobuf_*).
//
// Two global pools, "small" and "large", each a fixed number of equal buffers carved from
// one DMA region and kept in a lock-free multi-producer/multi-consumer ring. A module
// registers a name, then keeps one IobufChannel per thread that needs buffers; get() and
// put() go through the channel's own cache first and touch the ring only in batches.
//
// When a pool is empty, get() queues a caller-owned IobufEntry on the calling thread, and
// the buffer arrives later through the entry's callback, on that thread, in FIFO order.
// Unlike SPDK, a waiter never depends on its own thread putting a buffer back: every thread
// with iobuf channels has a 100 us poller that retries the pool while it has waiters. While
// any thread waits for a pool, puts anywhere return that pool's buffers to the ring instead
// of caching them, and cache misses queue instead of overtaking the waiters, so freed
// buffers reach the threads that are waiting. Buffers resting in the cache of a channel
// that does no I/O are not reclaimed: size the pools above the sum of the caches.
//
// Data path (get, put, abort): no allocation, lock, exception or log.
// Control path (options, initialize, finish, modules, channel init/fini, stats): may.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flint::thread {

class Thread;

struct IobufOptions {
    uint64_t small_pool_count = 8192;  // SPDK's defaults
    uint64_t large_pool_count = 1024;
    uint32_t small_bufsize = 8192;
    uint32_t large_bufsize = 135168;
};

// Limits iobuf_set_options enforces. The counts' floor is SPDK's; the ceilings keep one
// config typo from asking for terabytes (both pools together stay within 64 GiB).
inline constexpr uint64_t kIobufMinPoolCount = 64;
inline constexpr uint64_t kIobufMaxPoolCount = uint64_t{1} << 20;
inline constexpr uint32_t kIobufMinBufsize = 4096;
inline constexpr uint32_t kIobufMaxBufsize = 16u << 20;
inline constexpr uint64_t kIobufMaxTotalBytes = uint64_t{64} << 30;
// Buffers start on this boundary; each occupies its size rounded up to it.
inline constexpr uint32_t kIobufAlign = 4096;

// Sets the options used by the next iobuf_initialize(). Returns 0; -EBUSY once initialised;
// -EINVAL for a value outside the limits above, or large_bufsize < small_bufsize, with
// *error (if not null) set to "<field>: <reason>". Nothing changes on error.
int iobuf_set_options(const IobufOptions &opts, std::string *error);
const IobufOptions &iobuf_get_options();

// Allocates both pools from DMA memory. Returns 0, -EALREADY, or -ENOMEM (logged, nothing
// kept).
int iobuf_initialize();
// Frees both pools and forgets the registered modules. Logs an error for each pool whose
// buffers are not all back, and for channels still initialised (fini them first: their
// buffers are gone). No-op when not initialised.
void iobuf_finish();
bool iobuf_initialized();

// Registers a module name for channels and statistics. Returns 0 or -EEXIST. Names last
// until iobuf_finish().
int iobuf_register_module(const std::string &name);

class IobufChannel;
struct IobufEntry;
struct IobufThreadState;  // per-thread queues and retry poller (lib/thread/iobuf.cpp)
struct IobufAccess;

using IobufGetCb = void (*)(IobufEntry *entry, void *buf);

// A wait entry, owned by the caller (no allocation on the data path). It must stay alive,
// and unmoved, while queued: until its callback runs or abort() removes it.
struct IobufEntry {
    IobufGetCb cb = nullptr;  // set by IobufChannel::get()
    void *cb_arg = nullptr;   // the caller's

private:
    friend struct IobufAccess;
    // The layer's links; set while queued.
    IobufEntry *next_ = nullptr;
    IobufEntry *prev_ = nullptr;
    const void *queue_ = nullptr;  // the queue holding it; nullptr when not queued
    const IobufChannel *owner_ = nullptr;
};

struct IobufPoolStats {
    uint64_t cache = 0;  // gets served from the channel's cache
    uint64_t main = 0;   // gets served from the global pool at once
    uint64_t retry = 0;  // gets that had to queue
};

// One module's buffers on one thread: a cache of each pool's buffers. Everything but the
// constructor runs on the thread that called init(). Not movable: the layer keeps its
// address.
class IobufChannel {
public:
    IobufChannel() = default;
    // fini() if still initialised (on the owning thread).
    ~IobufChannel();
    IobufChannel(const IobufChannel &) = delete;
    IobufChannel &operator=(const IobufChannel &) = delete;

    // Binds the channel to the calling thread and module. Prefetches up to small_cache and
    // large_cache buffers (each capped at its pool's count); fewer when a pool runs short,
    // or none while threads wait for that pool: not an error (logged at debug). Returns 0;
    // -ENOENT for an unregistered module; -ENODEV if iobuf is not initialised; -EINVAL
    // outside a thread; -EALREADY if already initialised; -ENOMEM.
    int init(const std::string &module, uint32_t small_cache, uint32_t large_cache);
    // Returns the cached buffers to the pools and folds this channel's statistics into its
    // module's. Entries of this channel still queued are dropped (their callbacks never run)
    // and logged: abort them first.
    void fini();
    bool initialized() const { return state_ != nullptr; }

    // A buffer of at least len bytes: small if len <= small_bufsize, else large if
    // len <= large_bufsize. Returns it now, or returns nullptr after queueing entry; then
    // entry->cb(entry, buf) runs later on this thread, once per queued entry, in FIFO order
    // per pool, and never from inside get(). entry must not be queued already. A request
    // that fits is never failed. Returns nullptr without queueing when len > large_bufsize,
    // when entry is null and no buffer is at hand, or on an uninitialised channel.
    void *get(uint64_t len, IobufEntry *entry, IobufGetCb cb);
    // Gives back a buffer from get() with the same len (so the same pool). It goes to the
    // first waiter on this thread if only this thread waits for that pool; else to the
    // global pool, with the whole cache, if any thread waits; else to the cache, which
    // returns a batch to the pool when full (a channel without a cache: to the pool). May
    // run a waiter's callback before returning; the channel may be finished from it.
    void put(void *buf, uint64_t len);
    // Removes entry from the queue of len's pool on this thread; its callback never runs.
    // No-op if entry is not queued there (already served, or never queued).
    void abort(IobufEntry *entry, uint64_t len);

    // This channel's counters per pool, since init (on the owning thread).
    const IobufPoolStats &small_stats() const { return stats_[0]; }
    const IobufPoolStats &large_stats() const { return stats_[1]; }

private:
    friend struct IobufAccess;
    struct Cache {
        std::unique_ptr<void *[]> bufs;
        uint32_t count = 0;
        uint32_t size = 0;      // what init asked for (capped at the pool count)
        uint32_t capacity = 0;  // size plus one refill, so that puts batch the ring too
    };
    IobufThreadState *state_ = nullptr;
    Thread *thread_ = nullptr;
    uint64_t bufsize_[2] = {0, 0};
    Cache cache_[2];
    IobufPoolStats stats_[2];
    size_t module_ = 0;
    uint64_t generation_ = 0;  // of the pools it was initialised against
};

struct IobufModuleStats {
    std::string module;
    IobufPoolStats small_pool;
    IobufPoolStats large_pool;
};

// Sums, per registered module (in registration order), the counters of every channel
// (read on each channel's own thread) and of the channels already finished. cb runs later
// on the calling thread. When not initialised, cb runs at once (no channel can exist);
// outside a thread it also runs at once, with only the finished channels' counts, and
// logs an error.
void iobuf_get_stats(std::function<void(const std::vector<IobufModuleStats> &)> cb);

}  // namespace flint::thread
