// Per-thread bdev channels and the bdev_io pool they share (SPDK's model): one global pool
// of bdev_io_pool_size bdev_ios, and on each thread a management channel that caches up to
// bdev_io_cache_size of them and queues the thread's callers waiting for one.

// As in lib/thread: the C11 memory model, so ThreadSanitizer sees the ring's
// synchronisation (the ring functions are header-inline).
#ifndef RTE_USE_C11_MEM_MODEL
#define RTE_USE_C11_MEM_MODEL 1
#endif
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <cerrno>
#include <cstdlib>
#include <new>

#include "bdev_internal.h"
#include "flint/util/log.h"

namespace flint::bdev {
namespace {

// How often a thread with waiters looks for bdev_ios that other threads returned.
constexpr uint64_t kRetryPeriodUs = 100;

// A bdev_io and its layer-private part, allocated together.
struct alignas(64) Slot {
    BdevIo io;
    BdevIo::Private priv;
};

struct RingFree {
    void operator()(rte_ring *r) const { std::free(r); }
};

// Written on the app thread at layer_init and layer_fini only; the data path reads ring.
struct Pool {
    std::unique_ptr<Slot[]> slots;
    std::unique_ptr<rte_ring, RingFree> ring;  // multi-producer, multi-consumer
    uint32_t count = 0;
    uint32_t cache_size = 0;
    std::atomic<bool> initialized{false};
};
Pool g_pool;
// The management channels' io_device: any unique address.
char g_mgmt_device;

void cache_push(MgmtChannel *m, BdevIo *io) {
    io->priv->next_free = m->cache;
    m->cache = io;
    --m->cache_room;
}

// Cannot fail: the ring has room for the whole pool.
void pool_put(BdevIo *io) {
    void *obj = io;
    rte_ring_mp_enqueue(g_pool.ring.get(), obj);
}

// Runs waiters, oldest first, while the thread has a free bdev_io. A waiter that takes
// none lets the next one try, so waiters and cached bdev_ios never coexist afterwards.
// Out of line, so free_io's common path saves no registers.
[[gnu::noinline]] void serve_waiters(MgmtChannel *m) {
    while (m->cache != nullptr && m->wait_head != nullptr) {
        IoWaitEntry *e = m->wait_head;
        m->wait_head = e->next;
        if (m->wait_head == nullptr) {
            m->wait_tail = nullptr;
        }
        e->next = nullptr;
        e->cb(e->cb_arg);
    }
}

// Registered only while the thread has waiters: takes bdev_ios that other threads put back
// in the global pool, for a thread that frees none itself.
int retry_poll(void *arg) {
    auto *m = static_cast<MgmtChannel *>(arg);
    int busy = thread::kIdle;
    while (m->wait_head != nullptr) {
        void *obj;
        if (rte_ring_mc_dequeue(g_pool.ring.get(), &obj) != 0) {
            break;
        }
        cache_push(m, static_cast<BdevIo *>(obj));
        serve_waiters(m);
        busy = thread::kBusy;
    }
    if (m->wait_head == nullptr) {
        thread::poller_unregister(&m->retry_poller);
    }
    return busy;
}

int mgmt_create(void *ctx) {
    auto *m = new (ctx) MgmtChannel{};
    m->cache_room = g_pool.cache_size;
    if (thread::iobuf_initialized()) {
        int rc = m->iobuf.init("bdev", options().iobuf_small_cache_size,
                               options().iobuf_large_cache_size);
        if (rc != 0) {  // reads without a buffer and bounces fail on this thread
            FLINT_ERRLOG("bdev: no iobuf channel on thread '%s' (%d)",
                         thread::current()->name().c_str(), rc);
        }
    }
    return 0;
}

void mgmt_destroy(void *ctx) {
    auto *m = static_cast<MgmtChannel *>(ctx);
    size_t waiting = 0;
    for (IoWaitEntry *e = m->wait_head; e != nullptr; e = e->next) {
        ++waiting;
    }
    if (waiting != 0) {
        FLINT_ERRLOG(
            "bdev: the last bdev channel of thread '%s' closed with %zu caller(s) "
            "still waiting for a bdev_io; they will not be called",
            thread::current()->name().c_str(), waiting);
    }
    thread::poller_unregister(&m->retry_poller);
    while (m->cache != nullptr) {
        BdevIo *io = m->cache;
        m->cache = io->priv->next_free;
        pool_put(io);
    }
    m->~MgmtChannel();
}

}  // namespace

Options &options() {
    static Options o;
    return o;
}

int layer_init() {
    if (g_pool.initialized.load()) {
        return -EALREADY;
    }
    uint32_t n = options().bdev_io_pool_size;
    uint32_t cache = options().bdev_io_cache_size;
    if (n == 0 || cache == 0) {
        FLINT_ERRLOG("bdev: bdev_io_pool_size (%u) and bdev_io_cache_size (%u) must be non-zero", n,
                     cache);
        return -EINVAL;
    }
    std::unique_ptr<Slot[]> slots(new (std::nothrow) Slot[n]());  // zeroed: children skip prepare()
    // A power of two above n: the ring then holds every bdev_io, so puts never fail.
    uint32_t ring_size = rte_align32pow2(n + 1);
    ssize_t bytes = rte_ring_get_memsize_elem(sizeof(void *), ring_size);
    void *mem = bytes > 0 ? std::aligned_alloc(64, (static_cast<size_t>(bytes) + 63) & ~size_t{63})
                          : nullptr;
    std::unique_ptr<rte_ring, RingFree> ring(static_cast<rte_ring *>(mem));
    if (!slots || !ring || rte_ring_init(ring.get(), "bdev_io", ring_size, 0) != 0) {
        FLINT_ERRLOG("bdev: cannot allocate the bdev_io pool (%u bdev_ios, %zu MiB)", n,
                     (size_t{n} * sizeof(Slot)) >> 20);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; ++i) {
        slots[i].io.priv = &slots[i].priv;
        void *obj = &slots[i].io;
        rte_ring_sp_enqueue(ring.get(), obj);
    }
    g_pool.slots = std::move(slots);
    g_pool.ring = std::move(ring);
    g_pool.count = n;
    g_pool.cache_size = cache;
    if (thread::iobuf_initialized()) {
        int rc = thread::iobuf_register_module("bdev");
        if (rc != 0 && rc != -EEXIST) {
            return rc;
        }
    }
    thread::io_device_register(&g_mgmt_device, mgmt_create, mgmt_destroy, sizeof(MgmtChannel),
                               "bdev_mgmt");
    g_pool.initialized.store(true);
    return 0;
}

void layer_fini(std::function<void()> done) {
    if (!g_pool.initialized.load()) {
        if (done) {
            done();
        }
        return;
    }
    // Channels hold the management channels: this waits for every thread to drop its last.
    thread::io_device_unregister(&g_mgmt_device, [done = std::move(done)] {
        uint32_t back = rte_ring_count(g_pool.ring.get());
        if (back != g_pool.count) {
            // As SPDK: freed all the same. Those out were abandoned (a channel destroyed
            // with I/O in flight) or leaked by a caller that never called free_io.
            FLINT_ERRLOG("bdev: %u of %u bdev_ios were not returned by fini", g_pool.count - back,
                         g_pool.count);
        }
        g_pool.slots.reset();
        g_pool.ring.reset();
        g_pool.count = 0;
        g_pool.initialized.store(false);
        if (done) {
            done();
        }
    });
}

// The thread's cache is empty (pop_free_io in bdev_internal.h takes from it).
BdevIo *pop_free_io_slow(BdevChannel *bc) {
    void *obj;
    // With callers already waiting on this thread, a new request does not jump the queue.
    if (bc->mgmt->wait_head != nullptr || rte_ring_mc_dequeue(g_pool.ring.get(), &obj) != 0) {
        return nullptr;
    }
    auto *io = static_cast<BdevIo *>(obj);
    io->bdev = bc->bdev;
    io->priv->ch = bc;
    return io;
}

void free_io(BdevIo *io) {
    if (io->priv->buf_len != 0) {
        buf_release(io);
    }
    MgmtChannel *m = io->priv->ch->mgmt;
    if (m->cache_room != 0) [[likely]] {
        cache_push(m, io);
        if (m->wait_head != nullptr) [[unlikely]] {
            serve_waiters(m);
        }
        return;
    }
    // A full cache means no waiters here (serve_waiters leaves none behind a free bdev_io).
    pool_put(io);
}

void queue_wait(MgmtChannel *m, IoWaitEntry *entry) {
    entry->next = nullptr;
    if (m->wait_tail != nullptr) {
        m->wait_tail->next = entry;
    } else {
        m->wait_head = entry;
    }
    m->wait_tail = entry;
    if (m->retry_poller == nullptr) {
        m->retry_poller =
            thread::poller_register(retry_poll, m, kRetryPeriodUs, "bdev_io_wait_retry");
    }
}

int queue_io_wait(thread::IoChannel *ch, IoWaitEntry *entry) {
    MgmtChannel *m = bdev_channel(ch)->mgmt;
    if (entry == nullptr || entry->cb == nullptr || m->cache != nullptr) {
        return -EINVAL;
    }
    queue_wait(m, entry);
    return 0;
}

int channel_create(Bdev *b, void *ctx) {
    auto *bc = new (ctx) BdevChannel{};
    bc->bdev = b;
    if (!g_pool.initialized.load()) {
        FLINT_ERRLOG("bdev '%s': no channel before the bdev layer is initialised (layer_init)",
                     b->name.c_str());
        bc->~BdevChannel();
        return -ENODEV;
    }
    thread::IoChannel *mgmt_ch = thread::get_io_channel(&g_mgmt_device);
    if (mgmt_ch == nullptr) {
        bc->~BdevChannel();
        return -ENOMEM;
    }
    bc->mgmt = static_cast<MgmtChannel *>(thread::channel_ctx(mgmt_ch));
    bc->module_ch = thread::get_io_channel(b->ops->io_device());
    if (bc->module_ch == nullptr) {
        thread::put_io_channel(mgmt_ch);
        bc->~BdevChannel();
        return -ENOMEM;
    }
    lock_channel_init(bc);  // and one created while a range is locked must respect it
    qos_channel_init(bc);   // a channel created after limits were set must apply them
    return 0;
}

void channel_destroy(Bdev *b, void *ctx) {
    auto *bc = static_cast<BdevChannel *>(ctx);
    qos_channel_fini(bc);
    if (bc->outstanding != 0) {
        FLINT_ERRLOG("bdev '%s': channel destroyed with %lu I/O outstanding", b->name.c_str(),
                     static_cast<unsigned long>(bc->outstanding));
    }
    {
        std::lock_guard lock(b->state->stats_mu);
        b->state->closed_stats.add(bc->stats);
    }
    thread::put_io_channel(bc->module_ch);
    thread::put_io_channel(thread::channel_from_ctx(bc->mgmt));
    bc->~BdevChannel();
}

}  // namespace flint::bdev
