#include "flint/thread/iobuf.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <new>

#include "flint/env/env.h"
#include "flint/thread/thread.h"
#include "flint/util/log.h"

FLINT_LOG_FLAG(iobuf);

namespace flint::thread {

namespace {

constexpr int kSmall = 0;
constexpr int kLarge = 1;
constexpr const char *kPoolName[2] = {"small", "large"};
// Buffers moved between a cache and the ring per ring operation (SPDK's IOBUF_BATCH_SIZE).
constexpr uint32_t kBatch = 32;
constexpr uint64_t kRetryPeriodUs = 100;

// The free buffers of a pool: a bounded multi-producer/multi-consumer queue of pointers
// (D. Vyukov's design). Each cell's sequence number says whose turn it is: a producer or
// consumer claims a run of ready cells with one CAS on its position, then hands each cell
// over with a release store that the other side loads with acquire.
//
// Not rte_ring: its MP/MC mode waits for an earlier producer's tail with a relaxed load,
// so in the C11 model a consumer is not ordered after that producer's writes (harmless on
// x86, but ThreadSanitizer reports it, and it would hide real races on the buffers), and
// its HTS mode mixes 32- and 64-bit atomics on one word, which ThreadSanitizer cannot
// follow.
class PtrRing {
public:
    // Room for at least 2 * count pointers. Returns false when memory is short.
    bool init(uint64_t count) {
        uint64_t size = 1;
        while (size < 2 * count) {
            size <<= 1;
        }
        cells_.reset(new (std::nothrow) Cell[size]);
        if (!cells_) {
            return false;
        }
        for (uint64_t i = 0; i < size; ++i) {
            cells_[i].seq.store(i, std::memory_order_relaxed);
        }
        mask_ = size - 1;
        enq_.store(0, std::memory_order_relaxed);
        deq_.store(0, std::memory_order_relaxed);
        return true;
    }
    void reset() { cells_.reset(); }
    bool ready() const { return cells_ != nullptr; }

    // Takes up to n pointers (fewer when the ring has fewer); never blocks.
    uint32_t take(void **out, uint32_t n) {
        if (n == 0) {
            return 0;  // else a non-empty ring would loop below
        }
        uint64_t pos = deq_.load(std::memory_order_relaxed);
        for (;;) {
            uint32_t m = 0;
            while (m < n && seq(pos + m) == pos + m + 1) {
                ++m;
            }
            if (m == 0) {
                if (static_cast<int64_t>(seq(pos) - (pos + 1)) < 0) {
                    return 0;  // empty (or its next pointer not yet published)
                }
                pos = deq_.load(std::memory_order_relaxed);  // another consumer took it
                continue;
            }
            // The position is unchanged only if no other consumer claimed these cells.
            if (deq_.compare_exchange_weak(pos, pos + m, std::memory_order_relaxed)) {
                for (uint32_t i = 0; i < m; ++i) {
                    Cell &c = cell(pos + i);
                    out[i] = c.ptr;
                    c.seq.store(pos + i + mask_ + 1, std::memory_order_release);
                }
                return m;
            }
        }
    }

    // Adds n pointers. The ring has room for all of them, as it holds twice the pool; a
    // cell whose consumer from the previous lap is still reading it is waited for.
    void give(void *const *in, uint32_t n) {
        uint64_t pos = enq_.load(std::memory_order_relaxed);
        while (n > 0) {
            uint32_t m = 0;
            while (m < n && seq(pos + m) == pos + m) {
                ++m;
            }
            if (m == 0) {
                if (static_cast<int64_t>(seq(pos) - pos) < 0) {
                    pause();  // that slow consumer
                }
                pos = enq_.load(std::memory_order_relaxed);
                continue;
            }
            if (enq_.compare_exchange_weak(pos, pos + m, std::memory_order_relaxed)) {
                for (uint32_t i = 0; i < m; ++i) {
                    Cell &c = cell(pos + i);
                    c.ptr = in[i];
                    c.seq.store(pos + i + 1, std::memory_order_release);
                }
                in += m;
                n -= m;
                pos += m;
            }
        }
    }

    // Pointers in the ring; exact only while nobody gives or takes.
    uint64_t count() const {
        return enq_.load(std::memory_order_acquire) - deq_.load(std::memory_order_acquire);
    }

private:
    struct Cell {
        std::atomic<uint64_t> seq;
        void *ptr = nullptr;
    };
    Cell &cell(uint64_t pos) { return cells_[pos & mask_]; }
    uint64_t seq(uint64_t pos) { return cell(pos).seq.load(std::memory_order_acquire); }
    static void pause() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }

    std::unique_ptr<Cell[]> cells_;
    uint64_t mask_ = 0;
    alignas(64) std::atomic<uint64_t> enq_{0};
    alignas(64) std::atomic<uint64_t> deq_{0};
};

struct Pool {
    uint64_t count = 0;
    size_t stride = 0;  // bufsize rounded up to kIobufAlign
    env::DmaPtr region;
    PtrRing ring;
    // Threads whose queue for this pool is not empty. Read on every put and cache miss, so
    // it sits on its own line, written only when a queue empties or stops being empty.
    alignas(64) std::atomic<uint32_t> waiting{0};
};

struct Module {
    std::string name;
    IobufPoolStats retired[2];  // counters of channels already finished
};

struct Iobuf {
    // Control path only: options, init/finish, modules, the thread table, stats.
    std::mutex mu;
    IobufOptions opts;
    bool initialized = false;
    uint64_t generation = 0;
    Pool pools[2];
    std::vector<Module> modules;
    std::map<Thread *, IobufThreadState *> threads;
};

Iobuf &g() {
    static Iobuf s;
    return s;
}

}  // namespace

// A FIFO of entries, intrusive so that queueing and abort allocate nothing.
struct IobufQueue {
    IobufEntry *head = nullptr;
    IobufEntry *tail = nullptr;
    bool empty() const { return head == nullptr; }
};

// What the channels of one thread share: the wait queues and the retry poller.
struct IobufThreadState {
    Thread *thread = nullptr;
    IobufQueue queue[2];
    Poller *poller = nullptr;
    std::vector<IobufChannel *> channels;
    bool in_poll = false;  // the retry poller is running: fini defers the delete to it
    bool dead = false;
};

struct IobufAccess {
    static void push(IobufQueue &q, IobufEntry *e, const IobufChannel *owner) {
        e->next_ = nullptr;
        e->prev_ = q.tail;
        e->queue_ = &q;
        e->owner_ = owner;
        if (q.tail != nullptr) {
            q.tail->next_ = e;
        } else {
            q.head = e;
        }
        q.tail = e;
    }
    static void remove(IobufQueue &q, IobufEntry *e) {
        (e->prev_ != nullptr ? e->prev_->next_ : q.head) = e->next_;
        (e->next_ != nullptr ? e->next_->prev_ : q.tail) = e->prev_;
        e->next_ = e->prev_ = nullptr;
        e->queue_ = nullptr;
        e->owner_ = nullptr;
    }
    static bool queued_in(const IobufEntry *e, const IobufQueue &q) { return e->queue_ == &q; }
    static IobufEntry *next(const IobufEntry *e) { return e->next_; }
    static const IobufChannel *owner(const IobufEntry *e) { return e->owner_; }
    static size_t module(const IobufChannel *ch) { return ch->module_; }
    static uint64_t generation(const IobufChannel *ch) { return ch->generation_; }
};

namespace {

// Takes entry off q; the last one out tells the other threads this one stopped waiting.
IobufEntry *pop_waiter(IobufQueue &q, Pool &p) {
    IobufEntry *e = q.head;
    IobufAccess::remove(q, e);
    if (q.empty()) {
        p.waiting.fetch_sub(1, std::memory_order_relaxed);
    }
    return e;
}

void give_back(Pool &p, void *const *bufs, uint32_t n) {
    p.ring.give(bufs, n);
}

// Serves this thread's waiters from the global pool; registered for the thread's lifetime
// with iobuf channels, because registering or resuming a poller allocates and the first
// waiter queues on the data path.
int retry_poll(void *arg) {
    auto *st = static_cast<IobufThreadState *>(arg);
    int busy = kIdle;
    st->in_poll = true;
    for (int k : {kSmall, kLarge}) {
        IobufQueue &q = st->queue[k];
        Pool &p = g().pools[k];
        if (q.empty() || st->dead || !p.ring.ready()) {
            continue;  // no ring: finished under live channels (logged there)
        }
        uint32_t want = 0;
        for (IobufEntry *e = q.head; e != nullptr && want < kBatch; e = IobufAccess::next(e)) {
            ++want;
        }
        void *bufs[kBatch];
        uint32_t got = p.ring.take(bufs, want);
        uint32_t i = 0;
        // A callback may abort other entries or fini its channel: re-check each time.
        for (; i < got && !q.empty() && !st->dead; ++i) {
            IobufEntry *e = pop_waiter(q, p);
            e->cb(e, bufs[i]);
        }
        if (i < got) {
            give_back(p, bufs + i, got - i);
        }
        busy = got > 0 ? kBusy : busy;
    }
    st->in_poll = false;
    if (st->dead) {
        delete st;
    }
    return busy;
}

// Caller holds g().mu. Validates o; on error names the field in *error.
int check_options(const IobufOptions &o, std::string *error) {
    auto fail = [error](const std::string &msg) {
        if (error != nullptr) {
            *error = msg;
        }
        return -EINVAL;
    };
    const std::string counts = " must be between " + std::to_string(kIobufMinPoolCount) + " and " +
                               std::to_string(kIobufMaxPoolCount);
    if (o.small_pool_count < kIobufMinPoolCount || o.small_pool_count > kIobufMaxPoolCount) {
        return fail("small_pool_count:" + counts);
    }
    if (o.large_pool_count < kIobufMinPoolCount || o.large_pool_count > kIobufMaxPoolCount) {
        return fail("large_pool_count:" + counts);
    }
    if (o.small_bufsize < kIobufMinBufsize || o.small_bufsize > kIobufMaxBufsize) {
        return fail("small_bufsize: must be between " + std::to_string(kIobufMinBufsize) + " and " +
                    std::to_string(kIobufMaxBufsize));
    }
    if (o.large_bufsize < o.small_bufsize || o.large_bufsize > kIobufMaxBufsize) {
        return fail("large_bufsize: must be between small_bufsize (" +
                    std::to_string(o.small_bufsize) + ") and " + std::to_string(kIobufMaxBufsize));
    }
    auto bytes = [](uint64_t count, uint32_t size) {
        return count * ((uint64_t{size} + kIobufAlign - 1) / kIobufAlign * kIobufAlign);
    };
    uint64_t total =
        bytes(o.small_pool_count, o.small_bufsize) + bytes(o.large_pool_count, o.large_bufsize);
    if (total > kIobufMaxTotalBytes) {
        return fail("small_pool_count, large_pool_count: both pools together would take " +
                    std::to_string(total >> 20) + " MiB, more than the limit of " +
                    std::to_string(kIobufMaxTotalBytes >> 20) + " MiB");
    }
    return 0;
}

// Caller holds g().mu.
int create_pool(Pool &p, int k, uint64_t count, uint32_t bufsize) {
    p.count = count;
    p.stride = (size_t{bufsize} + kIobufAlign - 1) / kIobufAlign * kIobufAlign;
    p.region.reset(env::dma_zmalloc(count * p.stride, kIobufAlign));
    if (!p.region) {
        FLINT_ERRLOG(
            "iobuf: cannot allocate the %s pool: %lu buffers of %u bytes (%zu MiB of DMA "
            "memory); shrink it with iobuf_set_options or give DPDK more memory (-s)",
            kPoolName[k], static_cast<unsigned long>(count), bufsize,
            static_cast<size_t>((count * p.stride) >> 20));
        return -ENOMEM;
    }
    if (!p.ring.init(count)) {
        FLINT_ERRLOG("iobuf: cannot allocate the %s pool's ring", kPoolName[k]);
        p.region.reset();
        return -ENOMEM;
    }
    auto *base = static_cast<char *>(p.region.get());
    for (uint64_t i = 0; i < count; ++i) {
        void *buf = base + i * p.stride;
        give_back(p, &buf, 1);
    }
    p.waiting.store(0, std::memory_order_relaxed);
    return 0;
}

void free_pool(Pool &p) {
    p.ring.reset();
    p.region.reset();
    p.count = 0;
    p.stride = 0;
}

}  // namespace

int iobuf_set_options(const IobufOptions &opts, std::string *error) {
    Iobuf &s = g();
    std::lock_guard lock(s.mu);
    if (s.initialized) {
        if (error != nullptr) {
            *error = "iobuf is already initialised";
        }
        return -EBUSY;
    }
    int rc = check_options(opts, error);
    if (rc == 0) {
        s.opts = opts;
    }
    return rc;
}

const IobufOptions &iobuf_get_options() {
    return g().opts;
}

int iobuf_initialize() {
    Iobuf &s = g();
    std::lock_guard lock(s.mu);
    if (s.initialized) {
        return -EALREADY;
    }
    int rc = create_pool(s.pools[kSmall], kSmall, s.opts.small_pool_count, s.opts.small_bufsize);
    if (rc == 0) {
        rc = create_pool(s.pools[kLarge], kLarge, s.opts.large_pool_count, s.opts.large_bufsize);
        if (rc != 0) {
            free_pool(s.pools[kSmall]);
        }
    }
    if (rc != 0) {
        return rc;
    }
    s.initialized = true;
    ++s.generation;
    // One line, because the pools take a large share of DMA memory at startup.
    FLINT_NOTICELOG(
        "iobuf: %zu MiB of DMA memory for %lu small (%u B) and %lu large (%u B) "
        "buffers",
        static_cast<size_t>((s.pools[kSmall].count * s.pools[kSmall].stride +
                             s.pools[kLarge].count * s.pools[kLarge].stride) >>
                            20),
        static_cast<unsigned long>(s.opts.small_pool_count), s.opts.small_bufsize,
        static_cast<unsigned long>(s.opts.large_pool_count), s.opts.large_bufsize);
    return 0;
}

void iobuf_finish() {
    Iobuf &s = g();
    std::lock_guard lock(s.mu);
    if (!s.initialized) {
        return;
    }
    size_t channels = 0;
    for (auto &[t, st] : s.threads) {
        channels += st->channels.size();
    }
    if (channels != 0) {
        FLINT_ERRLOG("iobuf: finishing with %zu channel(s) still initialised", channels);
    }
    for (int k : {kSmall, kLarge}) {
        Pool &p = s.pools[k];
        uint64_t back = p.ring.count();
        if (back != p.count) {
            FLINT_ERRLOG("iobuf: %lu of %lu %s buffers are still out at finish",
                         static_cast<unsigned long>(p.count - back),
                         static_cast<unsigned long>(p.count), kPoolName[k]);
        }
        free_pool(p);
    }
    s.modules.clear();
    s.initialized = false;
    // Channels of this generation now skip the pools when they fini.
    ++s.generation;
}

bool iobuf_initialized() {
    Iobuf &s = g();
    std::lock_guard lock(s.mu);
    return s.initialized;
}

int iobuf_register_module(const std::string &name) {
    Iobuf &s = g();
    std::lock_guard lock(s.mu);
    for (const auto &m : s.modules) {
        if (m.name == name) {
            return -EEXIST;
        }
    }
    s.modules.push_back({name, {}});
    return 0;
}

IobufChannel::~IobufChannel() {
    fini();
}

int IobufChannel::init(const std::string &module, uint32_t small_cache, uint32_t large_cache) {
    if (state_ != nullptr) {
        return -EALREADY;
    }
    Thread *t = current();
    if (t == nullptr) {
        FLINT_ERRLOG("iobuf: channel for '%s' initialised outside a thread", module.c_str());
        return -EINVAL;
    }
    Iobuf &s = g();
    std::lock_guard lock(s.mu);
    if (!s.initialized) {
        return -ENODEV;
    }
    auto it = std::find_if(s.modules.begin(), s.modules.end(),
                           [&](const Module &m) { return m.name == module; });
    if (it == s.modules.end()) {
        return -ENOENT;
    }
    const uint32_t want[2] = {small_cache, large_cache};
    Cache cache[2];
    for (int k : {kSmall, kLarge}) {
        Cache &c = cache[k];
        c.size = static_cast<uint32_t>(std::min<uint64_t>(want[k], s.pools[k].count));
        c.capacity = c.size + std::min(c.size, kBatch);
        // At least one slot: a cacheless channel still dequeues through it.
        c.bufs.reset(new (std::nothrow) void *[std::max(c.capacity, 1u)]);
        if (!c.bufs) {
            return -ENOMEM;
        }
    }
    IobufThreadState *st;
    auto ts = s.threads.find(t);
    if (ts != s.threads.end()) {
        st = ts->second;
    } else {
        st = new (std::nothrow) IobufThreadState;
        if (st == nullptr) {
            return -ENOMEM;
        }
        st->thread = t;
        st->poller = poller_register(retry_poll, st, kRetryPeriodUs, "iobuf_retry");
        if (st->poller == nullptr) {
            delete st;
            return -ENOMEM;
        }
        s.threads.emplace(t, st);
    }
    st->channels.push_back(this);

    for (int k : {kSmall, kLarge}) {
        Pool &p = s.pools[k];
        Cache &c = cache[k];
        // Prefetching while threads wait would take buffers they are owed.
        if (c.size != 0 && p.waiting.load(std::memory_order_relaxed) == 0) {
            c.count = p.ring.take(c.bufs.get(), c.size);
        }
        if (c.count < c.size) {
            FLINT_DEBUGLOG(iobuf, "module '%s' on thread '%s': %u of %u %s buffers prefetched",
                           module.c_str(), t->name().c_str(), c.count, c.size, kPoolName[k]);
        }
        cache_[k] = std::move(c);
        bufsize_[k] = k == kSmall ? s.opts.small_bufsize : s.opts.large_bufsize;
        stats_[k] = {};
    }
    state_ = st;
    thread_ = t;
    module_ = static_cast<size_t>(it - s.modules.begin());
    generation_ = s.generation;
    return 0;
}

void IobufChannel::fini() {
    IobufThreadState *st = state_;
    if (st == nullptr) {
        return;
    }
    if (current() != thread_) {
        FLINT_ERRLOG("iobuf: channel finished off its thread ('%s')", thread_->name().c_str());
    }
    Iobuf &s = g();
    std::lock_guard lock(s.mu);
    const bool live = generation_ == s.generation;
    size_t dropped = 0;
    for (int k : {kSmall, kLarge}) {
        IobufQueue &q = st->queue[k];
        for (IobufEntry *e = q.head; e != nullptr;) {
            IobufEntry *next = IobufAccess::next(e);
            if (IobufAccess::owner(e) == this) {
                IobufAccess::remove(q, e);
                ++dropped;
                if (q.empty() && live) {
                    s.pools[k].waiting.fetch_sub(1, std::memory_order_relaxed);
                }
            }
            e = next;
        }
        Cache &c = cache_[k];
        if (live && c.count != 0) {
            give_back(s.pools[k], c.bufs.get(), c.count);
        }
        c = {};
        if (live) {
            IobufPoolStats &r = s.modules[module_].retired[k];
            r.cache += stats_[k].cache;
            r.main += stats_[k].main;
            r.retry += stats_[k].retry;
        }
    }
    if (dropped != 0) {
        FLINT_ERRLOG("iobuf: channel finished with %zu waiting entries; they will not be called",
                     dropped);
    }
    std::erase(st->channels, this);
    if (st->channels.empty()) {
        s.threads.erase(st->thread);
        poller_unregister(&st->poller);
        if (st->in_poll) {
            st->dead = true;  // retry_poll deletes it when it returns
        } else {
            delete st;
        }
    }
    state_ = nullptr;
    thread_ = nullptr;
}

void *IobufChannel::get(uint64_t len, IobufEntry *entry, IobufGetCb cb) {
    int k;
    if (len <= bufsize_[kSmall]) {
        k = kSmall;
    } else if (len <= bufsize_[kLarge]) {
        k = kLarge;
    } else {
        return nullptr;
    }
    if (state_ == nullptr) {
        return nullptr;
    }
    Cache &c = cache_[k];
    if (c.count > 0) {
        ++stats_[k].cache;
        return c.bufs[--c.count];
    }
    Pool &p = g().pools[k];
    IobufQueue &q = state_->queue[k];
    // Only when nobody waits for this pool: FIFO on this thread, no overtaking elsewhere.
    if (q.empty() && p.waiting.load(std::memory_order_relaxed) == 0) {
        uint32_t n = c.size == 0 ? 1 : std::min(c.size, kBatch);
        uint32_t got = p.ring.take(c.bufs.get(), n);
        if (got > 0) {
            ++stats_[k].main;
            c.count = got - 1;
            return c.bufs[got - 1];
        }
    }
    if (entry == nullptr) {
        return nullptr;
    }
    entry->cb = cb;
    if (q.empty()) {
        p.waiting.fetch_add(1, std::memory_order_relaxed);
    }
    IobufAccess::push(q, entry, this);
    ++stats_[k].retry;
    return nullptr;
}

void IobufChannel::put(void *buf, uint64_t len) {
    const int k = len <= bufsize_[kSmall] ? kSmall : kLarge;
    IobufThreadState *st = state_;
    Pool &p = g().pools[k];
    IobufQueue &q = st->queue[k];
    const uint32_t waiting = p.waiting.load(std::memory_order_relaxed);
    if (!q.empty() && waiting <= 1) {
        // Only this thread waits: hand it over directly. The callback runs last, as it may
        // fini this channel.
        IobufEntry *e = pop_waiter(q, p);
        e->cb(e, buf);
        return;
    }
    Cache &c = cache_[k];
    if (waiting != 0) {
        // Other threads wait: buf goes back with up to a batch of the cache, so they can
        // have them; later puts drain the rest (a put stays bounded in work).
        const uint32_t n = std::min(c.count, kBatch);
        c.count -= n;
        give_back(p, c.bufs.get() + c.count, n);
        give_back(p, &buf, 1);
        return;
    }
    if (c.count < c.capacity) {
        c.bufs[c.count++] = buf;
        return;
    }
    if (c.size == 0) {
        give_back(p, &buf, 1);
        return;
    }
    // Full: the pool gets back as many as one refill takes, and buf is cached.
    const uint32_t n = std::min(c.size, kBatch);
    c.count -= n;
    give_back(p, c.bufs.get() + c.count, n);
    c.bufs[c.count++] = buf;
}

void IobufChannel::abort(IobufEntry *entry, uint64_t len) {
    if (state_ == nullptr || entry == nullptr || len > bufsize_[kLarge]) {
        return;
    }
    const int k = len <= bufsize_[kSmall] ? kSmall : kLarge;
    IobufQueue &q = state_->queue[k];
    if (!IobufAccess::queued_in(entry, q)) {
        return;
    }
    IobufAccess::remove(q, entry);
    if (q.empty()) {
        g().pools[k].waiting.fetch_sub(1, std::memory_order_relaxed);
    }
}

void iobuf_get_stats(std::function<void(const std::vector<IobufModuleStats> &)> cb) {
    Iobuf &s = g();
    auto acc = std::make_shared<std::vector<IobufModuleStats>>();
    uint64_t gen;
    bool walk;
    {
        std::lock_guard lock(s.mu);
        for (const auto &m : s.modules) {
            acc->push_back({m.name, m.retired[kSmall], m.retired[kLarge]});
        }
        gen = s.generation;
        walk = s.initialized;
    }
    if (walk && current() == nullptr) {
        FLINT_ERRLOG("iobuf_get_stats called outside a thread: live channels not counted");
        walk = false;
    }
    if (!walk) {
        cb(*acc);
        return;
    }
    auto add = [](IobufPoolStats &to, const IobufPoolStats &from) {
        to.cache += from.cache;
        to.main += from.main;
        to.retry += from.retry;
    };
    // Each thread's channels are read on that thread, so their counters need no atomics.
    for_each_thread(
        [acc, gen, add](Thread *t) {
            Iobuf &s = g();
            std::lock_guard lock(s.mu);
            auto it = s.threads.find(t);
            if (gen != s.generation || it == s.threads.end()) {
                return;
            }
            for (const IobufChannel *ch : it->second->channels) {
                size_t m = IobufAccess::module(ch);
                if (IobufAccess::generation(ch) == gen && m < acc->size()) {
                    add((*acc)[m].small_pool, ch->small_stats());
                    add((*acc)[m].large_pool, ch->large_stats());
                }
            }
        },
        [acc, cb = std::move(cb)] { cb(*acc); });
}

}  // namespace flint::thread
