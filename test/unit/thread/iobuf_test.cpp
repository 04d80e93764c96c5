// iobuf: options, the per-thread caches against the global pools, the wait queues and their
// retry poller, statistics, and the "iobuf" subsystem's RPC methods. Threads are polled by
// hand with a virtual clock, except in the concurrency test, which runs two OS threads.

#include "flint/thread/iobuf.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "../common/eal_env.h"
#include "flint/event/app.h"
#include "flint/event/iobuf.h"
#include "flint/event/subsystem.h"
#include "flint/jsonrpc/jsonrpc.h"
#include "flint/thread/thread.h"
#include "flint/util/time.h"

using namespace flint;
using testing::internal::CaptureStderr;
using testing::internal::GetCapturedStderr;
using thread::IobufChannel;
using thread::IobufEntry;
using thread::IobufOptions;
using thread::Thread;

namespace {

FLINT_TEST_EAL_ENV("iobuf_test");

constexpr uint64_t kPool = 64;  // SPDK's minimum: the smallest pools the options allow
constexpr uint64_t kSmallSize = 4096;
constexpr uint64_t kLargeSize = 16384;

IobufOptions test_options() {
    IobufOptions o;
    o.small_pool_count = kPool;
    o.large_pool_count = kPool;
    o.small_bufsize = kSmallSize;
    o.large_bufsize = kLargeSize;
    return o;
}

// A request waiting for a buffer: the entry, and what its callback saw.
struct Wait {
    IobufEntry entry;
    void *buf = nullptr;
    int calls = 0;
    Thread *on = nullptr;
    std::vector<Wait *> *served = nullptr;  // the order callbacks ran in
};

void on_buf(IobufEntry *e, void *buf) {
    auto *w = static_cast<Wait *>(e->cb_arg);
    w->buf = buf;
    ++w->calls;
    w->on = thread::current();
    if (w->served != nullptr) {
        w->served->push_back(w);
    }
}

class IobufTest : public ::testing::Test {
protected:
    void SetUp() override {
        thread::lib_init({});
        std::string err;
        ASSERT_EQ(0, thread::iobuf_set_options(test_options(), &err)) << err;
    }

    void TearDown() override {
        thread::iobuf_finish();
        for (Thread *t : threads_) {
            thread::set_current(t);
            t->exit(100);
            thread::set_current(nullptr);
            for (int i = 0; i < 1000 && !t->exited(); ++i) {
                poll(t, 1000);
            }
            EXPECT_TRUE(t->exited()) << t->name();
            Thread::destroy(t);
        }
        EXPECT_TRUE(thread::lib_fini());
        EXPECT_EQ(0, thread::iobuf_set_options(IobufOptions{}, nullptr));
    }

    // Initialises the pools and the module "test".
    void start() {
        ASSERT_EQ(0, thread::iobuf_initialize());
        ASSERT_EQ(0, thread::iobuf_register_module("test"));
    }

    Thread *make(const char *name) {
        Thread *t = thread::create(name);
        threads_.push_back(t);
        poll(t);  // so its timed pollers start from the virtual clock
        return t;
    }

    template <class F>
    void on(Thread *t, F fn) {
        thread::set_current(t);
        fn();
        thread::set_current(nullptr);
    }

    // Polls t once after advancing the virtual clock by us.
    void poll(Thread *t, uint64_t us = 0) {
        now_ += util::us_to_ticks(us);
        t->poll(1024, now_);
    }

    // A waiter's wait: past the 100 us retry period.
    void retry(Thread *t) { poll(t, 150); }

    int init(Thread *t, IobufChannel &ch, uint32_t small_cache, uint32_t large_cache,
             const char *module = "test") {
        int rc = -1;
        on(t, [&] { rc = ch.init(module, small_cache, large_cache); });
        return rc;
    }
    void fini(Thread *t, IobufChannel &ch) {
        on(t, [&] { ch.fini(); });
    }

    void *get(Thread *t, IobufChannel &ch, uint64_t len, Wait *w = nullptr) {
        void *buf = nullptr;
        on(t, [&] {
            if (w != nullptr) {
                w->entry.cb_arg = w;
            }
            buf = ch.get(len, w != nullptr ? &w->entry : nullptr, on_buf);
        });
        return buf;
    }
    void put(Thread *t, IobufChannel &ch, void *buf, uint64_t len) {
        on(t, [&] { ch.put(buf, len); });
    }

    // Takes every buffer of len's pool through a channel without a cache.
    std::vector<void *> drain(Thread *t, IobufChannel &ch, uint64_t len) {
        std::vector<void *> out;
        for (void *b; (b = get(t, ch, len)) != nullptr;) {
            out.push_back(b);
        }
        return out;
    }

    // Every buffer of both pools is back: a fresh cacheless channel on t can take them all.
    void expect_all_back(Thread *t) {
        IobufChannel all;
        ASSERT_EQ(0, init(t, all, 0, 0));
        std::vector<void *> small = drain(t, all, kSmallSize);
        std::vector<void *> large = drain(t, all, kLargeSize);
        EXPECT_EQ(kPool, small.size());
        EXPECT_EQ(kPool, large.size());
        for (void *b : small) {
            put(t, all, b, kSmallSize);
        }
        for (void *b : large) {
            put(t, all, b, kLargeSize);
        }
        fini(t, all);
    }

    std::vector<thread::IobufModuleStats> stats(Thread *from) {
        std::vector<thread::IobufModuleStats> out;
        bool done = false;
        on(from, [&] {
            thread::iobuf_get_stats([&](const std::vector<thread::IobufModuleStats> &s) {
                out = s;
                done = true;
            });
        });
        for (int i = 0; i < 100 && !done; ++i) {
            for (Thread *t : threads_) {
                poll(t);
            }
        }
        EXPECT_TRUE(done);
        return out;
    }

    std::vector<Thread *> threads_;
    uint64_t now_ = util::ticks();
};

TEST_F(IobufTest, OptionsAreValidatedAndNamed) {
    struct Case {
        const char *field;
        IobufOptions o;
    };
    auto with = [](auto change) {
        IobufOptions o = test_options();
        change(o);
        return o;
    };
    const Case bad[] = {
        {"small_pool_count", with([](IobufOptions &o) { o.small_pool_count = 63; })},
        {"small_pool_count", with([](IobufOptions &o) { o.small_pool_count = (1u << 20) + 1; })},
        {"large_pool_count", with([](IobufOptions &o) { o.large_pool_count = 0; })},
        {"large_pool_count", with([](IobufOptions &o) { o.large_pool_count = UINT64_MAX; })},
        {"small_bufsize", with([](IobufOptions &o) { o.small_bufsize = 4095; })},
        {"small_bufsize", with([](IobufOptions &o) {
             o.small_bufsize = (16u << 20) + 1;
             o.large_bufsize = o.small_bufsize;
         })},
        {"large_bufsize", with([](IobufOptions &o) { o.large_bufsize = o.small_bufsize - 1; })},
        {"large_bufsize", with([](IobufOptions &o) { o.large_bufsize = (16u << 20) + 1; })},
        // Each field within its limits, both pools together over 64 GiB.
        {"small_pool_count, large_pool_count", with([](IobufOptions &o) {
             o.large_pool_count = 1u << 20;
             o.large_bufsize = 1u << 20;
         })},
    };
    for (const Case &c : bad) {
        std::string err;
        EXPECT_EQ(-EINVAL, thread::iobuf_set_options(c.o, &err)) << c.field;
        EXPECT_EQ(0u, err.rfind(std::string(c.field) + ":", 0)) << err;
    }
    // Nothing changed by the refusals.
    EXPECT_EQ(kPool, thread::iobuf_get_options().small_pool_count);
    EXPECT_EQ(kLargeSize, thread::iobuf_get_options().large_bufsize);

    IobufOptions edge;
    edge.small_pool_count = 64;
    edge.large_pool_count = 1u << 20;
    edge.small_bufsize = 4096;
    edge.large_bufsize = 4096;  // equal to small is allowed
    EXPECT_EQ(0, thread::iobuf_set_options(edge, nullptr));
    EXPECT_EQ(4096u, thread::iobuf_get_options().large_bufsize);

    // SPDK's defaults are valid.
    EXPECT_EQ(0, thread::iobuf_set_options(IobufOptions{}, nullptr));

    ASSERT_EQ(0, thread::iobuf_set_options(test_options(), nullptr));
    start();
    EXPECT_TRUE(thread::iobuf_initialized());
    EXPECT_EQ(-EALREADY, thread::iobuf_initialize());
    std::string err;
    EXPECT_EQ(-EBUSY, thread::iobuf_set_options(IobufOptions{}, &err));
    EXPECT_FALSE(err.empty());
    EXPECT_EQ(kPool, thread::iobuf_get_options().small_pool_count);
    thread::iobuf_finish();
    EXPECT_FALSE(thread::iobuf_initialized());
    EXPECT_EQ(0, thread::iobuf_set_options(IobufOptions{}, nullptr));
}

TEST_F(IobufTest, ModulesAndChannelInitErrors) {
    Thread *a = make("a");
    IobufChannel ch;
    EXPECT_EQ(-ENODEV, init(a, ch, 1, 1));  // before iobuf_initialize
    start();
    EXPECT_EQ(-EEXIST, thread::iobuf_register_module("test"));
    EXPECT_EQ(0, thread::iobuf_register_module("other"));
    EXPECT_EQ(-ENOENT, init(a, ch, 1, 1, "nosuch"));
    EXPECT_EQ(-EINVAL, ch.init("test", 1, 1));  // outside a thread
    EXPECT_FALSE(ch.initialized());
    ASSERT_EQ(0, init(a, ch, 1, 1));
    EXPECT_TRUE(ch.initialized());
    EXPECT_EQ(-EALREADY, init(a, ch, 1, 1));
    fini(a, ch);
    EXPECT_FALSE(ch.initialized());
    // Modules are forgotten at finish, as in SPDK: a module registers again at each init.
    thread::iobuf_finish();
    ASSERT_EQ(0, thread::iobuf_initialize());
    EXPECT_EQ(-ENOENT, init(a, ch, 1, 1));
    EXPECT_EQ(0, thread::iobuf_register_module("test"));
}

TEST_F(IobufTest, CacheFirstThenPoolInBatches) {
    start();
    Thread *a = make("a");
    IobufChannel ch;
    ASSERT_EQ(0, init(a, ch, 4, 2));

    std::set<void *> seen;
    std::vector<void *> small;
    for (int i = 0; i < 4; ++i) {  // the prefetched cache
        small.push_back(get(a, ch, 1));
    }
    EXPECT_EQ(4u, ch.small_stats().cache);
    EXPECT_EQ(0u, ch.small_stats().main);
    // A miss takes a batch of the cache's size: one returned, three cached.
    small.push_back(get(a, ch, kSmallSize));
    EXPECT_EQ(1u, ch.small_stats().main);
    for (int i = 0; i < 3; ++i) {
        small.push_back(get(a, ch, kSmallSize));
    }
    EXPECT_EQ(7u, ch.small_stats().cache);
    EXPECT_EQ(1u, ch.small_stats().main);
    small.push_back(get(a, ch, 100));
    EXPECT_EQ(2u, ch.small_stats().main);
    EXPECT_EQ(0u, ch.small_stats().retry);
    for (void *b : small) {
        ASSERT_NE(nullptr, b);
        EXPECT_EQ(0u, reinterpret_cast<uintptr_t>(b) % thread::kIobufAlign);
        std::memset(b, 0xa5, kSmallSize);  // the whole size is usable
        EXPECT_TRUE(seen.insert(b).second);
    }

    // Above small_bufsize: the large pool; above large_bufsize: nothing, and nothing queued.
    void *large = get(a, ch, kSmallSize + 1);
    ASSERT_NE(nullptr, large);
    std::memset(large, 0x5a, kLargeSize);
    EXPECT_TRUE(seen.insert(large).second);
    EXPECT_EQ(1u, ch.large_stats().cache);
    Wait w;
    EXPECT_EQ(nullptr, get(a, ch, kLargeSize + 1, &w));
    retry(a);
    EXPECT_EQ(0, w.calls);
    EXPECT_EQ(0u, ch.large_stats().retry + ch.small_stats().retry);
    EXPECT_EQ(nullptr, get(a, ch, UINT64_MAX, &w));

    // Puts go to the cache, which returns a batch to the pool when full (4 + 32).
    for (void *b : small) {
        put(a, ch, b, kSmallSize);
    }
    put(a, ch, large, kSmallSize + 1);
    fini(a, ch);

    expect_all_back(a);
}

TEST_F(IobufTest, FullCacheReturnsABatchToThePool) {
    start();
    Thread *a = make("a");
    Thread *b = make("b");
    IobufChannel ca, cb;
    ASSERT_EQ(0, init(a, ca, 0, 0));
    std::vector<void *> bufs = drain(a, ca, kSmallSize);
    ASSERT_EQ(kPool, bufs.size());
    fini(a, ca);
    ASSERT_EQ(0, init(a, ca, 8, 0));  // holds up to 8 + 8, returns 8 at a time
    for (void *buf : bufs) {
        put(a, ca, buf, kSmallSize);
    }
    // 64 puts: 16 fill the cache, each next 8 send 8 back.
    ASSERT_EQ(0, init(b, cb, 0, 0));
    std::vector<void *> back = drain(b, cb, kSmallSize);
    EXPECT_EQ(48u, back.size());
    for (void *buf : back) {
        put(b, cb, buf, kSmallSize);
    }
    fini(a, ca);  // its 16 go back
    fini(b, cb);
    expect_all_back(a);
}

TEST_F(IobufTest, ExhaustionQueuesInFifoOrderAndPutResumes) {
    start();
    Thread *a = make("a");
    IobufChannel ch;
    ASSERT_EQ(0, init(a, ch, 0, 0));
    std::vector<void *> held = drain(a, ch, kSmallSize);
    ASSERT_EQ(kPool, held.size());

    std::vector<Wait *> served;
    Wait w[3];
    for (Wait &x : w) {
        x.served = &served;
        EXPECT_EQ(nullptr, get(a, ch, kSmallSize, &x));
    }
    EXPECT_EQ(3u, ch.small_stats().retry);
    // Without a cache entry and with an empty pool, a null entry gets nothing and no queue.
    EXPECT_EQ(nullptr, get(a, ch, kSmallSize));
    EXPECT_EQ(3u, ch.small_stats().retry);
    // The large pool is independent.
    void *large = get(a, ch, kLargeSize);
    EXPECT_NE(nullptr, large);
    retry(a);
    EXPECT_TRUE(served.empty());

    // Each put serves the oldest waiter, with that very buffer.
    put(a, ch, held[0], kSmallSize);
    ASSERT_EQ(1u, served.size());
    EXPECT_EQ(&w[0], served[0]);
    EXPECT_EQ(held[0], w[0].buf);
    EXPECT_EQ(a, w[0].on);
    put(a, ch, held[1], kSmallSize);
    put(a, ch, held[2], kSmallSize);
    ASSERT_EQ(3u, served.size());
    EXPECT_EQ(&w[1], served[1]);
    EXPECT_EQ(&w[2], served[2]);
    for (Wait &x : w) {
        EXPECT_EQ(1, x.calls);
    }
    // No waiter left, and no cache: the next put goes to the pool.
    put(a, ch, held[3], kSmallSize);
    EXPECT_EQ(held[3], get(a, ch, kSmallSize));
    for (void *buf : held) {
        put(a, ch, buf, kSmallSize);
    }
    put(a, ch, large, kLargeSize);
    fini(a, ch);
    expect_all_back(a);
}

TEST_F(IobufTest, OtherModuleOnTheSameThreadServesTheQueue) {
    start();
    ASSERT_EQ(0, thread::iobuf_register_module("other"));
    Thread *a = make("a");
    IobufChannel mine, other;
    ASSERT_EQ(0, init(a, mine, 0, 0));
    ASSERT_EQ(0, init(a, other, 0, 0, "other"));
    std::vector<void *> held = drain(a, other, kSmallSize);
    Wait w;
    EXPECT_EQ(nullptr, get(a, mine, kSmallSize, &w));
    put(a, other, held.back(), kSmallSize);
    EXPECT_EQ(1, w.calls);
    EXPECT_EQ(held.back(), w.buf);
    held.back() = w.buf;
    for (void *buf : held) {
        put(a, other, buf, kSmallSize);
    }
    fini(a, mine);
    fini(a, other);
}

TEST_F(IobufTest, AbortRemovesAnEntry) {
    start();
    Thread *a = make("a");
    IobufChannel ch;
    ASSERT_EQ(0, init(a, ch, 0, 0));
    std::vector<void *> held = drain(a, ch, kSmallSize);
    std::vector<Wait *> served;
    Wait w[3];
    for (Wait &x : w) {
        x.served = &served;
        ASSERT_EQ(nullptr, get(a, ch, kSmallSize, &x));
    }
    on(a, [&] {
        ch.abort(&w[1].entry, kSmallSize);
        ch.abort(&w[1].entry, kSmallSize);  // no longer queued: nothing happens
        ch.abort(&w[2].entry, kLargeSize);  // not in the large queue: nothing happens
        ch.abort(&w[2].entry, UINT64_MAX);  // no pool at all
    });
    put(a, ch, held[0], kSmallSize);
    put(a, ch, held[1], kSmallSize);
    ASSERT_EQ(2u, served.size());
    EXPECT_EQ(&w[0], served[0]);
    EXPECT_EQ(&w[2], served[1]);
    EXPECT_EQ(0, w[1].calls);
    // Aborting a served entry is a no-op too.
    on(a, [&] { ch.abort(&w[0].entry, kSmallSize); });
    retry(a);
    EXPECT_EQ(0, w[1].calls);

    // The last waiter aborted: the thread no longer counts as waiting, so puts cache again
    // and other threads' misses go to the pool.
    Wait late;
    ASSERT_EQ(nullptr, get(a, ch, kSmallSize, &late));
    on(a, [&] { ch.abort(&late.entry, kSmallSize); });
    Thread *b = make("b");
    IobufChannel cb;
    ASSERT_EQ(0, init(b, cb, 0, 0));
    put(a, ch, held[2], kSmallSize);  // no cache: to the pool
    EXPECT_EQ(held[2], get(b, cb, kSmallSize));
    EXPECT_EQ(0, late.calls);
    put(b, cb, held[2], kSmallSize);

    // w[0] and w[2] got held[0] and held[1]; held[2] is back already.
    EXPECT_EQ(held[0], w[0].buf);
    EXPECT_EQ(held[1], w[2].buf);
    held.erase(held.begin() + 2);
    for (void *buf : held) {
        put(a, ch, buf, kSmallSize);
    }
    fini(a, ch);
    fini(b, cb);
    expect_all_back(a);
}

TEST_F(IobufTest, WaiterOnAThreadWithNoBuffersIsServedByItsRetryPoller) {
    start();
    Thread *a = make("a");
    Thread *b = make("b");
    IobufChannel ca, cb;
    // a caches: without the waiter, its puts would stay in its cache.
    ASSERT_EQ(0, init(a, ca, 8, 0));
    ASSERT_EQ(0, init(b, cb, 0, 0));
    std::vector<void *> held = drain(a, ca, kSmallSize);
    ASSERT_EQ(kPool, held.size());

    Wait w;
    ASSERT_EQ(nullptr, get(b, cb, kSmallSize, &w));
    retry(b);
    EXPECT_EQ(0, w.calls);

    // b holds nothing and puts nothing: a's put reaches the pool, and b's poller takes it.
    put(a, ca, held.back(), kSmallSize);
    poll(b);
    EXPECT_EQ(0, w.calls);  // the poller's period has not passed yet
    retry(b);
    ASSERT_EQ(1, w.calls);
    EXPECT_EQ(held.back(), w.buf);
    EXPECT_EQ(b, w.on);
    held.pop_back();

    // Once nobody waits, a caches again: b's miss finds the pool empty.
    put(a, ca, held.back(), kSmallSize);
    held.pop_back();
    EXPECT_EQ(nullptr, get(b, cb, kSmallSize));

    put(b, cb, w.buf, kSmallSize);
    for (void *buf : held) {
        put(a, ca, buf, kSmallSize);
    }
    fini(a, ca);
    fini(b, cb);
}

TEST_F(IobufTest, WhileAThreadWaitsPutsFlushCachesAndMissesDoNotOvertake) {
    start();
    Thread *a = make("a");
    Thread *b = make("b");
    Thread *c = make("c");
    IobufChannel ca, cb, cc;
    ASSERT_EQ(0, init(a, ca, 8, 0));  // prefetches 8 small buffers
    ASSERT_EQ(0, init(b, cb, 0, 0));
    ASSERT_EQ(0, init(c, cc, 0, 0));
    std::vector<void *> held = drain(c, cc, kSmallSize);
    ASSERT_EQ(kPool - 8, held.size());

    Wait wb[3];
    for (Wait &x : wb) {
        ASSERT_EQ(nullptr, get(b, cb, kSmallSize, &x));
    }
    // A put on a returns its 8 cached buffers with the one put.
    put(a, ca, held.back(), kSmallSize);
    held.pop_back();
    // c has no waiters, but a miss now queues behind b's instead of taking the pool's.
    Wait wc;
    EXPECT_EQ(nullptr, get(c, cc, kSmallSize, &wc));
    EXPECT_EQ(1u, cc.small_stats().retry);
    retry(b);
    for (Wait &x : wb) {
        EXPECT_EQ(1, x.calls);
        held.push_back(x.buf);
    }
    retry(c);
    ASSERT_EQ(1, wc.calls);
    held.push_back(wc.buf);
    // a's cache went out: its next get takes from the pool (5 left there).
    void *fa = get(a, ca, kSmallSize);
    ASSERT_NE(nullptr, fa);
    EXPECT_EQ(1u, ca.small_stats().main);
    EXPECT_EQ(0u, ca.small_stats().cache);
    held.push_back(fa);

    for (void *buf : held) {
        put(c, cc, buf, kSmallSize);
    }
    fini(a, ca);
    fini(b, cb);
    fini(c, cc);
}

TEST_F(IobufTest, PrefetchTakesWhatThePoolHas) {
    start();
    Thread *a = make("a");
    IobufChannel big, small;
    ASSERT_EQ(0, init(a, big, 1000, 0));  // capped at the pool: all 64
    ASSERT_EQ(0, init(a, small, 8, 8));   // none left to prefetch: still fine
    Wait w;
    EXPECT_EQ(nullptr, get(a, small, kSmallSize, &w));
    void *large = get(a, small, kLargeSize);
    EXPECT_NE(nullptr, large);
    EXPECT_EQ(1u, small.large_stats().cache);
    void *buf = get(a, big, kSmallSize);
    ASSERT_NE(nullptr, buf);
    EXPECT_EQ(1u, big.small_stats().cache);
    put(a, big, buf, kSmallSize);  // to small's waiter, on the same thread
    EXPECT_EQ(buf, w.buf);
    put(a, small, w.buf, kSmallSize);
    put(a, small, large, kLargeSize);
    fini(a, small);
    fini(a, big);
    expect_all_back(a);
}

TEST_F(IobufTest, StatsSumChannelsPerModuleIncludingFinishedOnes) {
    start();
    ASSERT_EQ(0, thread::iobuf_register_module("other"));
    Thread *a = make("a");
    Thread *b = make("b");
    IobufChannel ta, tb, oa;
    ASSERT_EQ(0, init(a, ta, 1, 0));
    ASSERT_EQ(0, init(b, tb, 0, 1));
    ASSERT_EQ(0, init(a, oa, 0, 0, "other"));

    void *s1 = get(a, ta, kSmallSize);                    // cache
    void *s2 = get(a, ta, kSmallSize);                    // main
    void *l1 = get(b, tb, kLargeSize);                    // cache
    std::vector<void *> rest = drain(a, oa, kSmallSize);  // main x 62
    Wait w;
    EXPECT_EQ(nullptr, get(b, tb, kSmallSize, &w));  // retry

    auto s = stats(a);
    ASSERT_EQ(2u, s.size());
    EXPECT_EQ("test", s[0].module);
    EXPECT_EQ(1u, s[0].small_pool.cache);
    EXPECT_EQ(1u, s[0].small_pool.main);
    EXPECT_EQ(1u, s[0].small_pool.retry);
    EXPECT_EQ(1u, s[0].large_pool.cache);
    EXPECT_EQ(0u, s[0].large_pool.main);
    EXPECT_EQ("other", s[1].module);
    EXPECT_EQ(kPool - 2, s[1].small_pool.main);
    EXPECT_EQ(0u, s[1].small_pool.cache + s[1].small_pool.retry);

    on(b, [&] { tb.abort(&w.entry, kSmallSize); });
    put(a, ta, s1, kSmallSize);
    put(a, ta, s2, kSmallSize);
    put(b, tb, l1, kLargeSize);
    for (void *buf : rest) {
        put(a, oa, buf, kSmallSize);
    }
    // Finished channels still count.
    fini(b, tb);
    fini(a, oa);
    s = stats(b);
    ASSERT_EQ(2u, s.size());
    EXPECT_EQ(1u, s[0].small_pool.retry);
    EXPECT_EQ(1u, s[0].large_pool.cache);
    EXPECT_EQ(1u, s[0].small_pool.cache);
    EXPECT_EQ(kPool - 2, s[1].small_pool.main);
    fini(a, ta);
    s = stats(a);
    EXPECT_EQ(1u, s[0].small_pool.main);

    // Outside a thread: what finished channels left, at once (and an error logged).
    bool called = false;
    CaptureStderr();
    thread::iobuf_get_stats([&](const std::vector<thread::IobufModuleStats> &v) {
        called = true;
        ASSERT_EQ(2u, v.size());
        EXPECT_EQ(1u, v[0].small_pool.retry);
    });
    EXPECT_NE(std::string::npos, GetCapturedStderr().find("outside a thread"));
    EXPECT_TRUE(called);
    expect_all_back(a);
}

TEST_F(IobufTest, FinishWithBuffersOutLogs) {
    start();
    Thread *a = make("a");
    IobufChannel ch, left;
    ASSERT_EQ(0, init(a, ch, 0, 0));
    ASSERT_NE(nullptr, get(a, ch, kSmallSize));
    ASSERT_NE(nullptr, get(a, ch, kSmallSize));
    ASSERT_NE(nullptr, get(a, ch, kLargeSize));
    fini(a, ch);
    ASSERT_EQ(0, init(a, left, 0, 0));
    CaptureStderr();
    thread::iobuf_finish();
    std::string log = GetCapturedStderr();
    EXPECT_NE(std::string::npos, log.find("2 of 64 small buffers are still out")) << log;
    EXPECT_NE(std::string::npos, log.find("1 of 64 large buffers are still out")) << log;
    EXPECT_NE(std::string::npos, log.find("1 channel(s) still initialised")) << log;
    EXPECT_FALSE(thread::iobuf_initialized());
    // The stale channel's fini leaves the (new) pools alone.
    start();
    fini(a, left);
    IobufChannel all;
    ASSERT_EQ(0, init(a, all, 0, 0));
    EXPECT_EQ(kPool, drain(a, all, kSmallSize).size());
    fini(a, all);
    CaptureStderr();
    thread::iobuf_finish();
    log = GetCapturedStderr();
    EXPECT_NE(std::string::npos, log.find("64 of 64 small buffers are still out")) << log;
}

TEST_F(IobufTest, FinishedChannelDropsItsWaitersAndTheThreadExits) {
    start();
    Thread *a = make("a");
    IobufChannel ch;
    ASSERT_EQ(0, init(a, ch, 0, 0));
    std::vector<void *> held = drain(a, ch, kSmallSize);
    Wait w;
    ASSERT_EQ(nullptr, get(a, ch, kSmallSize, &w));
    CaptureStderr();
    fini(a, ch);
    std::string log = GetCapturedStderr();
    EXPECT_NE(std::string::npos, log.find("1 waiting entries")) << log;
    IobufChannel other;
    ASSERT_EQ(0, init(a, other, 0, 0));
    for (void *buf : held) {
        put(a, other, buf, kSmallSize);
    }
    retry(a);
    EXPECT_EQ(0, w.calls);
    fini(a, other);
    // The retry poller goes with the thread's last channel.
    on(a, [&] { EXPECT_EQ(0u, a->timed_poller_count()); });
    expect_all_back(a);
}

// A callback that finishes its own channel from inside the retry poller.
TEST_F(IobufTest, CallbackMayFinishTheChannelInsideTheRetryPoller) {
    start();
    Thread *a = make("a");
    Thread *b = make("b");
    IobufChannel ca;
    ASSERT_EQ(0, init(a, ca, 0, 0));
    std::vector<void *> held = drain(a, ca, kSmallSize);
    struct Ctx {
        Wait w[2];
        IobufChannel ch;
    } ctx;
    ASSERT_EQ(0, init(b, ctx.ch, 0, 0));
    for (Wait &x : ctx.w) {
        x.entry.cb_arg = &ctx;
        on(b, [&] {
            ASSERT_EQ(nullptr, ctx.ch.get(kSmallSize, &x.entry, [](IobufEntry *e, void *buf) {
                auto *c = static_cast<Ctx *>(e->cb_arg);
                c->w[0].buf = buf;
                ++c->w[0].calls;
                c->ch.fini();  // drops the second entry: the poller returns its buffer
            }));
        });
    }
    put(a, ca, held[0], kSmallSize);
    put(a, ca, held[1], kSmallSize);
    retry(b);
    EXPECT_EQ(1, ctx.w[0].calls);
    EXPECT_FALSE(ctx.ch.initialized());
    on(b, [&] { EXPECT_EQ(0u, b->timed_poller_count()); });
    held.erase(held.begin(), held.begin() + 2);
    held.push_back(ctx.w[0].buf);
    for (void *buf : held) {
        put(a, ca, buf, kSmallSize);
    }
    fini(a, ca);
    expect_all_back(a);
}

// Four OS threads (more than this machine class has cores, so some get preempted in the
// middle of ring operations), each polling its own thread, ask for more buffers than the
// pools hold: every request is served, no buffer is held twice, and all come back.
TEST_F(IobufTest, ConcurrentThreadsShareThePoolsWithoutStarving) {
    start();
    // Per thread, 80 wanted from each pool of 64: the pools run out even if the two OS
    // threads happen not to overlap.
    constexpr int kSlots = 160;
    constexpr uint64_t kOps = 50000;
    constexpr int kWorkers = 4;
    struct Worker;
    struct Slot {
        IobufEntry entry;
        Worker *w = nullptr;
        uint64_t len = 0;
        void *buf = nullptr;
        bool waiting = false;
        int age = 0;
    };
    struct Worker {
        Thread *t = nullptr;
        uint64_t id = 0;
        IobufChannel ch;
        Slot slots[kSlots];
        uint64_t started = 0;
        uint64_t completed = 0;
        std::atomic<bool> done{false};
        std::atomic<bool> failed{false};
        thread::Poller *poller = nullptr;

        // Marks buf as held by this worker; it must have been free.
        void claim(Slot &s, void *buf) {
            auto *tag = static_cast<uint64_t *>(buf);
            if (*tag != 0) {
                failed = true;
            }
            *tag = id;
            s.buf = buf;
            s.age = 0;
        }
        static void cb(IobufEntry *e, void *buf) {
            auto *s = static_cast<Slot *>(e->cb_arg);
            s->waiting = false;
            s->w->claim(*s, buf);
        }
        static int step(void *arg) {
            auto *w = static_cast<Worker *>(arg);
            for (Slot &s : w->slots) {
                if (s.buf != nullptr) {
                    if (++s.age > 3) {
                        auto *tag = static_cast<uint64_t *>(s.buf);
                        if (*tag != w->id) {
                            w->failed = true;
                        }
                        *tag = 0;
                        void *buf = s.buf;
                        s.buf = nullptr;
                        ++w->completed;
                        w->ch.put(buf, s.len);
                    }
                } else if (!s.waiting && w->started < kOps) {
                    ++w->started;
                    void *buf = w->ch.get(s.len, &s.entry, cb);
                    if (buf != nullptr) {
                        w->claim(s, buf);
                    } else {
                        s.waiting = true;
                    }
                }
            }
            if (w->completed == kOps) {
                w->done = true;
            }
            return thread::kBusy;
        }
    };
    Worker w[kWorkers];
    std::vector<std::thread> os;
    const char *names[kWorkers] = {"w0", "w1", "w2", "w3"};
    for (int i = 0; i < kWorkers; ++i) {
        w[i].t = make(names[i]);
        w[i].id = i + 1;
        for (int j = 0; j < kSlots; ++j) {
            Slot &s = w[i].slots[j];
            s.w = &w[i];
            s.entry.cb_arg = &s;
            s.len = j % 2 == 0 ? kSmallSize : kLargeSize;
        }
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::atomic<int> ready{0};
    for (Worker &x : w) {
        os.emplace_back([&x, &ready, deadline] {
            thread::set_current(x.t);
            if (x.ch.init("test", 4, 4) != 0) {
                x.failed = true;
            }
            x.poller = thread::poller_register(Worker::step, &x, 0, "worker");
            thread::set_current(nullptr);
            // Start together, so that the threads compete for the pools.
            ready.fetch_add(1);
            while (ready.load() < kWorkers) {
                std::this_thread::yield();
            }
            while (!x.done && std::chrono::steady_clock::now() < deadline) {
                x.t->poll(64, util::ticks());
            }
            thread::set_current(x.t);
            thread::poller_unregister(&x.poller);
            x.ch.fini();
            thread::set_current(nullptr);
        });
    }
    for (auto &t : os) {
        t.join();
    }
    for (Worker &x : w) {
        EXPECT_TRUE(x.done) << x.t->name() << " completed " << x.completed;
        EXPECT_FALSE(x.failed) << x.t->name();
    }
    auto s = stats(w[0].t);
    ASSERT_EQ(1u, s.size());
    EXPECT_EQ(kWorkers * kOps, s[0].small_pool.cache + s[0].small_pool.main +
                                   s[0].small_pool.retry + s[0].large_pool.cache +
                                   s[0].large_pool.main + s[0].large_pool.retry);
    EXPECT_GT(s[0].small_pool.retry, 0u);  // the pools did run out
    CaptureStderr();
    thread::iobuf_finish();
    std::string log = GetCapturedStderr();
    EXPECT_EQ(std::string::npos, log.find("still out")) << log;
}

// ---- The "iobuf" subsystem and its RPC methods ----

class IobufRpcTest : public IobufTest {
protected:
    void SetUp() override {
        IobufTest::SetUp();
        event::register_iobuf_subsystem();
        event::rpc_registry().set_state(jsonrpc::kStartup);
    }
    void TearDown() override {
        event::rpc_registry().set_state(jsonrpc::kStartup);
        IobufTest::TearDown();
    }

    // Runs a method on thread t (the app thread's role), polling until it answers.
    Json::Value call(Thread *t, const std::string &method, const Json::Value &params = {}) {
        auto response = std::make_shared<Json::Value>();
        auto req = std::make_shared<jsonrpc::Request>(
            method, params, 1, [response](const Json::Value &r) { *response = r; });
        on(t, [&] { event::rpc_registry().dispatch(req); });
        req.reset();
        for (int i = 0; i < 100 && response->isNull(); ++i) {
            poll(t);
        }
        return *response;
    }
};

Json::Value parse(const std::string &text) {
    Json::Value v;
    std::string errs;
    Json::CharReaderBuilder b;
    std::unique_ptr<Json::CharReader> r(b.newCharReader());
    EXPECT_TRUE(r->parse(text.data(), text.data() + text.size(), &v, &errs)) << errs;
    return v;
}

// The compact form of a JSON text, to compare with a built value whatever its integer types.
std::string same(const std::string &text) {
    return jsonrpc::to_string(parse(text));
}

TEST_F(IobufRpcTest, SetOptionsAtStartupThenStatsAtRuntime) {
    Thread *app = make("app");
    const event::Subsystem *sub = event::subsystems().find("iobuf");
    ASSERT_NE(nullptr, sub);

    struct Bad {
        const char *params;
        const char *message;
    };
    const Bad bad[] = {
        {R"({"small_pool_count": 63})", "Invalid parameter 'small_pool_count': must be between"},
        {R"({"large_pool_count": 2000000})", "Invalid parameter 'large_pool_count'"},
        {R"({"small_bufsize": 1024})", "Invalid parameter 'small_bufsize'"},
        {R"({"large_bufsize": 2048})", "Invalid parameter 'large_bufsize': must be between"},
        {R"({"large_bufsize": 5000000000})", "Invalid parameter 'large_bufsize'"},
        {R"({"small_pool_count": "many"})", "Invalid parameter 'small_pool_count'"},
        {R"({"small_pool_count": -1})", "Invalid parameter 'small_pool_count'"},
        {R"({"bogus": 1})", "bogus"},
    };
    for (const Bad &b : bad) {
        Json::Value r = call(app, "iobuf_set_options", parse(b.params));
        EXPECT_EQ(jsonrpc::kInvalidParams, r["error"]["code"].asInt()) << b.params;
        EXPECT_NE(std::string::npos, r["error"]["message"].asString().find(b.message))
            << r["error"]["message"].asString();
    }
    EXPECT_EQ(kPool, thread::iobuf_get_options().small_pool_count);

    Json::Value r = call(app, "iobuf_set_options",
                         parse(R"({"small_pool_count": 128, "large_bufsize": 65536})"));
    EXPECT_EQ(Json::Value(true), r["result"]) << jsonrpc::to_string(r);
    EXPECT_EQ(128u, thread::iobuf_get_options().small_pool_count);
    EXPECT_EQ(kPool, thread::iobuf_get_options().large_pool_count);  // untouched
    EXPECT_EQ(65536u, thread::iobuf_get_options().large_bufsize);

    Json::Value config(Json::arrayValue);
    sub->write_config(config);
    EXPECT_EQ(same(R"([{"method": "iobuf_set_options", "params": {
                  "small_pool_count": 128, "large_pool_count": 64,
                  "small_bufsize": 4096, "large_bufsize": 65536}}])"),
              jsonrpc::to_string(config));

    EXPECT_EQ(jsonrpc::kInvalidState, call(app, "iobuf_get_stats")["error"]["code"].asInt());

    int rc = 1;
    on(app, [&] { sub->init([&](int r) { rc = r; }); });
    ASSERT_EQ(0, rc);
    EXPECT_TRUE(thread::iobuf_initialized());
    event::rpc_registry().set_state(jsonrpc::kRuntime);
    EXPECT_EQ(jsonrpc::kInvalidState,
              call(app, "iobuf_set_options", parse(R"({"small_pool_count": 256})"))["error"]["code"]
                  .asInt());

    ASSERT_EQ(0, thread::iobuf_register_module("bdev"));
    IobufChannel ch;
    ASSERT_EQ(0, init(app, ch, 0, 0, "bdev"));
    void *buf = get(app, ch, 60000);  // large, from the pool
    ASSERT_NE(nullptr, buf);
    r = call(app, "iobuf_get_stats");
    EXPECT_EQ(same(R"([{"module": "bdev",
                         "small_pool": {"cache": 0, "main": 0, "retry": 0},
                         "large_pool": {"cache": 0, "main": 1, "retry": 0}}])"),
              jsonrpc::to_string(r["result"]));
    EXPECT_EQ(jsonrpc::kInvalidParams,
              call(app, "iobuf_get_stats", parse(R"({"x": 1})"))["error"]["code"].asInt());
    put(app, ch, buf, 60000);
    fini(app, ch);

    bool done = false;
    on(app, [&] { sub->fini([&] { done = true; }); });
    EXPECT_TRUE(done);
    EXPECT_FALSE(thread::iobuf_initialized());
}

}  // namespace
