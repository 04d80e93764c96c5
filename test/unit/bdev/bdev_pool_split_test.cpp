// The shared bdev_io pool (per-thread caches, io-wait queues, the retry poller) and parallel
// splitting into child bdev_ios, against fake modules.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../common/eal_env.h"
#include "../common/poll_threads.h"
#include "fake_bdev.h"
#include "flint/bdev/module.h"
#include "flint/env/env.h"
#include "flint/thread/iobuf.h"
#include "flint/util/time.h"

using namespace flint;
using bdev::BdevIo;
using bdev::IoType;
using bdev::NvmeStatus;
namespace nvme_status = bdev::nvme_status;
using test::FakeOps;
using test::on_done;
using test::Result;

namespace {

FLINT_TEST_EAL_ENV("bdev_pool_split_test");

bool same(NvmeStatus a, NvmeStatus b) {
    return a.sct == b.sct && a.sc == b.sc;
}

struct FakeBdev {
    FakeOps ops;
    bdev::Bdev bdev;
    bool registered = false;
};

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
    std::vector<uint8_t> v(n);
    std::mt19937 rng(seed);
    for (auto &x : v) {
        x = static_cast<uint8_t>(rng());
    }
    return v;
}

// iovecs over buf with the given lengths, which must add up to buf's size.
std::vector<iovec> cut(std::vector<uint8_t> &buf, const std::vector<size_t> &lens) {
    std::vector<iovec> iov;
    size_t off = 0;
    for (size_t l : lens) {
        iov.push_back({buf.data() + off, l});
        off += l;
    }
    EXPECT_EQ(buf.size(), off);
    return iov;
}

class PoolSplitTest : public ::testing::Test {
protected:
    void SetUp() override {
        saved_ = bdev::options();
        thread::lib_init({});
        t_ = thread::create("main");
        threads_.push_back(t_);
        thread::set_current(t_);
    }
    void TearDown() override {
        thread::set_current(t_);
        for (const Opened &o : opened_) {
            thread::put_io_channel(o.ch);
            bdev::close(o.desc);
        }
        pump();
        for (auto &f : fakes_) {
            if (f->registered) {
                int rc = -1;
                ASSERT_EQ(0, bdev::unregister_bdev(&f->bdev, [&](int r) { rc = r; }));
                EXPECT_TRUE(pump_until([&] { return rc == 0; }));
            }
            bool unreg = false;
            thread::io_device_unregister(&f->ops, [&] { unreg = true; });
            EXPECT_TRUE(pump_until([&] { return unreg; }));
        }
        if (layer_up_) {
            bool done = false;
            bdev::layer_fini([&] { done = true; });
            EXPECT_TRUE(pump_until([&] { return done; }));
        }
        if (iobuf_up_) {
            thread::iobuf_finish();
        }
        test::exit_threads(threads_);
        EXPECT_TRUE(thread::lib_fini());
        bdev::options() = saved_;
    }

    // Before start_layer: iobuf with small buffers, so bounce buffers run short.
    void start_iobuf(uint32_t large_bufsize, uint64_t large_count = 64) {
        thread::IobufOptions o;
        o.small_bufsize = thread::kIobufMinBufsize;
        o.small_pool_count = thread::kIobufMinPoolCount;
        o.large_bufsize = large_bufsize;
        o.large_pool_count = large_count;
        ASSERT_EQ(0, thread::iobuf_set_options(o, nullptr));
        ASSERT_EQ(0, thread::iobuf_initialize());
        iobuf_up_ = true;
    }
    void start_layer(uint32_t pool = 65535, uint32_t cache = 256) {
        bdev::options().bdev_io_pool_size = pool;
        bdev::options().bdev_io_cache_size = cache;
        ASSERT_EQ(0, bdev::layer_init());
        layer_up_ = true;
    }
    FakeBdev *make_bdev(const std::string &name, uint64_t blocks = 1024, uint32_t bs = 512) {
        auto f = std::make_unique<FakeBdev>();
        f->ops.bs = bs;
        f->ops.data.assign(blocks * bs, 0);
        thread::io_device_register(&f->ops, nullptr, nullptr, 0, "fake " + name);
        f->bdev.name = name;
        f->bdev.block_size = bs;
        f->bdev.num_blocks = blocks;
        f->bdev.module = &test::g_fake_module;
        f->bdev.ops = &f->ops;
        EXPECT_EQ(0, bdev::register_bdev(&f->bdev));
        f->registered = true;
        fakes_.push_back(std::move(f));
        return fakes_.back().get();
    }
    struct Opened {
        bdev::Desc *desc = nullptr;
        thread::IoChannel *ch = nullptr;
    };
    // A descriptor and a channel on the main thread; TearDown closes them.
    Opened open(const std::string &name, bool write) {
        Opened o;
        EXPECT_EQ(0, bdev::open(name, write, nullptr, &o.desc));
        o.ch = bdev::get_io_channel(o.desc);
        EXPECT_NE(nullptr, o.ch);
        opened_.push_back(o);
        return o;
    }
    thread::Thread *add_thread(const std::string &name) {
        thread::Thread *t = thread::create(name);
        threads_.push_back(t);
        return t;
    }
    // Runs fn as thread t (the test itself goes on as the main thread).
    template <class F>
    void on(thread::Thread *t, F fn) {
        thread::set_current(t);
        fn();
        thread::set_current(t_);
    }
    // Polls every thread for a while, as their reactors would.
    void pump(int rounds = 20) { test::poll_threads(threads_, t_, rounds); }
    // Pumps until pred holds (timed pollers need real time to pass), at most 10 s.
    template <class P>
    bool pump_until(P pred) {
        return test::step_until([&] { pump(1); }, pred);
    }
    // Completes what f's module holds until r is done.
    bool run_to_done(FakeBdev *f, const Result &r) {
        return pump_until([&] {
            while (!f->ops.pending.empty()) {
                f->ops.complete_one();
            }
            return r.done > 0;
        });
    }
    // 200 rounds of a random write and read back, each through its own random geometry and
    // iovec cuts (unaligned to blocks, empty iovecs), checked against a model of the disk.
    // With required_alignment set, segment sizes stay multiples of it and the buffers are
    // misaligned. *splits counts the writes that reached the module in pieces.
    void random_rounds(FakeBdev *f, uint32_t seed, int *splits) {
        bdev::Desc *d;
        ASSERT_EQ(0, bdev::open(f->bdev.name, true, nullptr, &d));
        auto *ch = bdev::get_io_channel(d);
        std::mt19937 rng(seed);
        auto pick = [&](uint32_t lo, uint32_t hi) {
            return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
        };
        // Random iovec lengths adding up to bytes.
        auto random_cuts = [&](size_t bytes) {
            std::vector<size_t> lens;
            size_t left = bytes;
            while (left > 0) {
                size_t l = pick(0, 9) == 0 ? 0 : std::min<size_t>(left, pick(1, 1500));
                lens.push_back(l);
                left -= l;
            }
            return lens;
        };
        bdev::Bdev &b = f->bdev;
        uint32_t align = b.required_alignment;
        std::vector<uint8_t> model(f->ops.data.size(), 0);
        for (int round = 0; round < 200; ++round) {
            b.optimal_io_boundary = pick(0, 2) == 0 ? 0 : pick(1, 16);
            b.max_transfer_blocks = pick(0, 2) == 0 ? 0 : pick(1, 12);
            b.max_num_segments = pick(0, 2) == 0 ? 0 : pick(3, 16);
            b.max_segment_size =
                pick(0, 2) == 0 ? 0 : (align > 1 ? pick(1, 4) * align : pick(3, 8) * 256);
            uint64_t num = pick(1, 64);
            uint64_t off = pick(0, static_cast<uint32_t>(b.num_blocks - num));
            std::vector<uint8_t> src = pattern(num * 512, seed + round);
            std::vector<iovec> wv = cut(src, random_cuts(src.size()));
            size_t before = f->ops.submitted.size();
            Result w;
            ASSERT_EQ(0, bdev::writev(d, ch, wv.data(), static_cast<int>(wv.size()), off, num,
                                      on_done, &w));
            ASSERT_TRUE(run_to_done(f, w));
            ASSERT_EQ(1, w.done);
            *splits += f->ops.submitted.size() - before > 1 ? 1 : 0;
            if (w.ok == 0) {
                // Only when one block needs more iovecs than a child may carry; the children
                // before it were written.
                EXPECT_TRUE(same(nvme_status::kInvalidField, w.status));
                model = f->ops.data;
                continue;
            }
            std::copy(src.begin(), src.end(), model.begin() + static_cast<long>(off * 512));
            ASSERT_EQ(0, std::memcmp(f->ops.data.data(), model.data(), model.size())) << round;

            std::vector<uint8_t> out(src.size(), 0xee);
            std::vector<iovec> rv = cut(out, random_cuts(out.size()));
            Result r;
            ASSERT_EQ(0, bdev::readv(d, ch, rv.data(), static_cast<int>(rv.size()), off, num,
                                     on_done, &r));
            ASSERT_TRUE(run_to_done(f, r));
            if (r.ok == 1) {
                ASSERT_EQ(0, std::memcmp(out.data(), src.data(), src.size())) << round;
            }
        }
        thread::put_io_channel(ch);
        bdev::close(d);
        pump();
    }
    bdev::IoStats iostat(FakeBdev *f) {
        bdev::IoStats st;
        bool got = false;
        bdev::get_iostat(&f->bdev, [&](const bdev::IoStats &s) {
            st = s;
            got = true;
        });
        EXPECT_TRUE(pump_until([&] { return got; }));
        return st;
    }

    thread::Thread *t_ = nullptr;
    std::vector<thread::Thread *> threads_;
    std::vector<std::unique_ptr<FakeBdev>> fakes_;
    bdev::Options saved_;
    bool layer_up_ = false;
    bool iobuf_up_ = false;
    std::vector<Opened> opened_;
};

// ---- the shared pool ----

TEST_F(PoolSplitTest, NoChannelBeforeTheLayerIsInitialised) {
    FakeBdev *f = make_bdev("Early");
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Early", false, nullptr, &d));
    EXPECT_EQ(nullptr, bdev::get_io_channel(d));
    bdev::close(d);
    (void)f;
}

// Channels reserve nothing: 300 (bdev, thread) channels with the default options, where
// per-channel reservations stopped at 65535 / 256 = 255.
TEST_F(PoolSplitTest, MoreThan255ChannelsOnOneThread) {
    start_layer();
    const int kBdevs = 300;
    std::vector<FakeBdev *> fs;
    std::vector<bdev::Desc *> ds(kBdevs);
    std::vector<thread::IoChannel *> chs(kBdevs);
    for (int i = 0; i < kBdevs; ++i) {
        fs.push_back(make_bdev("Many" + std::to_string(i), 8));
        ASSERT_EQ(0, bdev::open(fs[i]->bdev.name, false, nullptr, &ds[i]));
        chs[i] = bdev::get_io_channel(ds[i]);
        ASSERT_NE(nullptr, chs[i]) << i;
    }
    std::vector<uint8_t> buf(512);
    Result r;
    for (int i = 0; i < kBdevs; ++i) {
        ASSERT_EQ(0, bdev::read(ds[i], chs[i], buf.data(), 0, 1, on_done, &r));
    }
    for (FakeBdev *f : fs) {
        f->ops.complete_one();
    }
    pump();
    EXPECT_EQ(kBdevs, r.ok);
    for (int i = 0; i < kBdevs; ++i) {
        thread::put_io_channel(chs[i]);
        bdev::close(ds[i]);
    }
    pump();
}

// Thread B holds every bdev_io and returns them to the global pool (beyond its own cache);
// thread A, which frees nothing, gets its waiter served by the retry poller.
TEST_F(PoolSplitTest, RetryPollerServesAThreadThatFreesNothing) {
    start_layer(6, 2);
    FakeBdev *f = make_bdev("Shared");
    thread::Thread *a = add_thread("a");
    thread::Thread *b = add_thread("b");
    bdev::Desc *da, *db;
    thread::IoChannel *cha = nullptr, *chb = nullptr;
    on(a, [&] {
        ASSERT_EQ(0, bdev::open("Shared", false, nullptr, &da));
        cha = bdev::get_io_channel(da);
    });
    on(b, [&] {
        ASSERT_EQ(0, bdev::open("Shared", false, nullptr, &db));
        chb = bdev::get_io_channel(db);
    });
    ASSERT_NE(nullptr, cha);
    ASSERT_NE(nullptr, chb);
    std::vector<uint8_t> buf(512);
    Result rb, ra;
    on(b, [&] {
        for (int i = 0; i < 6; ++i) {
            ASSERT_EQ(0, bdev::read(db, chb, buf.data(), 0, 1, on_done, &rb));
        }
        EXPECT_EQ(-ENOMEM, bdev::read(db, chb, buf.data(), 0, 1, on_done, &rb));
    });
    struct Waiter {
        bdev::IoWaitEntry entry;
        bdev::Desc *d;
        thread::IoChannel *ch;
        uint8_t *buf;
        Result *r;
        int called = 0;
        int rc = 1;
    } w{{}, da, cha, buf.data(), &ra};
    w.entry.cb = [](void *arg) {
        auto *w = static_cast<Waiter *>(arg);
        ++w->called;
        w->rc = bdev::read(w->d, w->ch, w->buf, 0, 1, on_done, w->r);
    };
    w.entry.cb_arg = &w;
    size_t timed_before = 0, timed_waiting = 0;
    on(a, [&] {
        EXPECT_EQ(-ENOMEM, bdev::read(da, cha, buf.data(), 0, 1, on_done, &ra));
        timed_before = a->timed_poller_count();
        ASSERT_EQ(0, bdev::queue_io_wait(cha, &w.entry));
        timed_waiting = a->timed_poller_count();
    });
    EXPECT_EQ(timed_before + 1, timed_waiting);  // the retry poller, only while waiting
    // B's I/O completes on B: two bdev_ios stay in B's cache, four go back to the pool.
    on(b, [&] {
        while (!f->ops.pending.empty()) {
            f->ops.complete_one();
        }
    });
    EXPECT_EQ(6, rb.ok);
    EXPECT_EQ(0, w.called);  // nothing was freed on A
    // The pool has bdev_ios again, but A's waiter comes first: no jumping the queue.
    on(a, [&] { EXPECT_EQ(-ENOMEM, bdev::read(da, cha, buf.data(), 0, 1, on_done, &ra)); });
    ASSERT_TRUE(pump_until([&] { return w.called == 1; }));
    EXPECT_EQ(0, w.rc);
    ASSERT_TRUE(pump_until([&] { return f->ops.pending.size() == 1; }));
    on(a, [&] { f->ops.complete_one(); });
    pump();
    EXPECT_EQ(1, ra.ok);
    size_t timed_after = 0;
    on(a, [&] { timed_after = a->timed_poller_count(); });
    EXPECT_EQ(timed_before, timed_after);  // unregistered once no one waits
    on(a, [&] {
        thread::put_io_channel(cha);
        bdev::close(da);
    });
    on(b, [&] {
        thread::put_io_channel(chb);
        bdev::close(db);
    });
    pump();
}

// A freed bdev_io serves this thread's waiters before anyone else, and a new request does
// not jump ahead of them.
TEST_F(PoolSplitTest, WaitersComeFirst) {
    start_layer(2, 2);
    FakeBdev *f = make_bdev("W");
    auto [d, ch] = open("W", false);
    std::vector<uint8_t> buf(512);
    Result r, waiter_r;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 1, 1, on_done, &r));
    ASSERT_EQ(-ENOMEM, bdev::read(d, ch, buf.data(), 2, 1, on_done, &r));
    struct Waiter {
        bdev::IoWaitEntry entry;
        bdev::Desc *d;
        thread::IoChannel *ch;
        uint8_t *buf;
        Result *r;
    } w{{}, d, ch, buf.data(), &waiter_r};
    w.entry.cb = [](void *arg) {
        auto *w = static_cast<Waiter *>(arg);
        EXPECT_EQ(0, bdev::read(w->d, w->ch, w->buf, 3, 1, on_done, w->r));
    };
    w.entry.cb_arg = &w;
    ASSERT_EQ(0, bdev::queue_io_wait(ch, &w.entry));
    f->ops.complete_one();  // its bdev_io goes to the waiter at once
    EXPECT_EQ(1, r.ok);
    ASSERT_EQ(2u, f->ops.pending.size());
    EXPECT_EQ(3u, f->ops.pending.back()->offset_blocks);
    EXPECT_EQ(-ENOMEM, bdev::read(d, ch, buf.data(), 4, 1, on_done, &r));
    while (!f->ops.pending.empty()) {
        f->ops.complete_one();
    }
    pump();
    EXPECT_EQ(2, r.ok);
    EXPECT_EQ(1, waiter_r.ok);
}

// Two OS threads, each polling its own thread, share a pool smaller than either one's
// depth: bdev_ios move between them through the global pool (ThreadSanitizer checks it).
TEST_F(PoolSplitTest, TwoOsThreadsShareASmallPool) {
    start_layer(12, 4);
    // Completes every I/O on a later turn of the submitting thread.
    struct InstantOps : bdev::BdevOps {
        void submit(thread::IoChannel *, BdevIo *io) override {
            thread::send_msg(
                thread::current(),
                [](void *arg) {
                    bdev::io_complete(static_cast<BdevIo *>(arg), nvme_status::kSuccess);
                },
                io);
        }
        bool supports(IoType t) const override { return t == IoType::Read; }
        void *io_device() override { return this; }
        void destruct(std::function<void()> done) override { done(); }
    } ops;
    thread::io_device_register(&ops, nullptr, nullptr, 0, "instant");
    bdev::Bdev b;
    b.name = "Instant";
    b.block_size = 512;
    b.num_blocks = 64;
    b.module = &test::g_fake_module;
    b.ops = &ops;
    ASSERT_EQ(0, bdev::register_bdev(&b));
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Instant", false, nullptr, &d));

    constexpr int kDepth = 16;
    constexpr int kTarget = 20000;
    struct Worker;
    struct Task {
        Worker *w;
        bdev::IoWaitEntry wait;
    };
    struct Worker {
        thread::Thread *t;
        bdev::Desc *d;
        thread::IoChannel *ch = nullptr;
        int submitted = 0;
        int completed = 0;
        int errors = 0;
        int waits = 0;
        uint8_t buf[512];
        Task tasks[kDepth];
    };
    struct Ops {
        static void submit(Task *task) {
            Worker *w = task->w;
            if (w->submitted >= kTarget) {
                return;  // a late waiter: all is sent
            }
            int rc = bdev::read(w->d, w->ch, w->buf, 0, 1, done, task);
            if (rc == 0) {
                ++w->submitted;
            } else if (rc == -ENOMEM) {
                ++w->waits;
                if (bdev::queue_io_wait(w->ch, &task->wait) != 0) {
                    ++w->errors;
                }
            } else {
                ++w->errors;
            }
        }
        static void done(BdevIo *io, bool ok, void *arg) {
            auto *task = static_cast<Task *>(arg);
            Worker *w = task->w;
            bdev::free_io(io);
            ++w->completed;
            w->errors += ok ? 0 : 1;
            if (w->submitted < kTarget) {
                submit(task);
            }
        }
    };
    std::vector<std::unique_ptr<Worker>> workers;
    for (const char *name : {"w0", "w1"}) {
        auto w = std::make_unique<Worker>();
        w->t = add_thread(name);
        w->d = d;
        for (Task &task : w->tasks) {
            task.w = w.get();
            task.wait.cb = [](void *arg) { Ops::submit(static_cast<Task *>(arg)); };
            task.wait.cb_arg = &task;
        }
        workers.push_back(std::move(w));
    }
    thread::set_current(nullptr);
    std::vector<std::thread> os;
    std::atomic<int> ready{0};
    for (auto &wp : workers) {
        Worker *w = wp.get();
        os.emplace_back([w, &ready] {
            // The EAL pinned this process's main thread (and so its children) to one core.
            cpu_set_t all;
            CPU_ZERO(&all);
            for (int c = 0; c < CPU_SETSIZE; ++c) {
                CPU_SET(c, &all);
            }
            sched_setaffinity(0, sizeof(all), &all);
            thread::set_current(w->t);
            w->ch = bdev::get_io_channel(w->d);
            // Both start together, so their demand (2 x kDepth) meets the pool at once.
            ready.fetch_add(1);
            while (ready.load() < 2) {
                std::this_thread::yield();
            }
            if (w->ch != nullptr) {
                for (Task &task : w->tasks) {
                    Ops::submit(&task);
                }
            }
            thread::set_current(nullptr);
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
            while (w->ch != nullptr && w->completed < kTarget &&
                   std::chrono::steady_clock::now() < deadline) {
                w->t->poll(64, util::ticks());
            }
        });
    }
    for (auto &t : os) {
        t.join();
    }
    thread::set_current(t_);
    for (auto &w : workers) {
        ASSERT_NE(nullptr, w->ch);
        EXPECT_EQ(kTarget, w->completed);
        EXPECT_EQ(0, w->errors);
        EXPECT_GT(w->waits, 0);  // its depth alone is more than the pool
        on(w->t, [&] { thread::put_io_channel(w->ch); });
    }
    bdev::close(d);
    int rc = -1;
    ASSERT_EQ(0, bdev::unregister_bdev(&b, [&](int r) { rc = r; }));
    ASSERT_TRUE(pump_until([&] { return rc == 0; }));
    bool unreg = false;
    thread::io_device_unregister(&ops, [&] { unreg = true; });
    ASSERT_TRUE(pump_until([&] { return unreg; }));
}

// ---- splitting ----

TEST_F(PoolSplitTest, SplitChildrenAreAtTheModuleTogether) {
    start_layer();
    FakeBdev *f = make_bdev("S", 1024);
    f->bdev.optimal_io_boundary = 8;
    auto [d, ch] = open("S", true);
    // 40 children: 32 at once, the rest as those complete.
    std::vector<uint8_t> src = pattern(320 * 512, 1);
    Result w;
    ASSERT_EQ(0, bdev::write(d, ch, src.data(), 0, 320, on_done, &w));
    EXPECT_EQ(32u, f->ops.pending.size());
    EXPECT_EQ(0, w.done);
    uint64_t expect_off = 0;
    for (BdevIo *io : f->ops.pending) {
        EXPECT_EQ(IoType::Write, io->type);
        EXPECT_EQ(expect_off, io->offset_blocks);
        EXPECT_EQ(8u, io->num_blocks);
        expect_off += 8;
    }
    f->ops.complete_one();
    EXPECT_EQ(32u, f->ops.pending.size());  // the next child took the finished one's place
    EXPECT_EQ(256u, f->ops.pending.back()->offset_blocks);
    ASSERT_TRUE(run_to_done(f, w));
    EXPECT_EQ(1, w.done);
    EXPECT_EQ(1, w.ok);
    EXPECT_EQ(40u, f->ops.submitted.size());
    EXPECT_EQ(32u, f->ops.max_pending);
    EXPECT_EQ(0, std::memcmp(f->ops.data.data(), src.data(), src.size()));
    // Accounted once, as the caller sent it.
    bdev::IoStats st = iostat(f);
    EXPECT_EQ(1u, st.num_write_ops);
    EXPECT_EQ(src.size(), st.bytes_written);
}

TEST_F(PoolSplitTest, ParentCompletesOnceWithTheFirstError) {
    start_layer();
    FakeBdev *f = make_bdev("E", 1024);
    f->bdev.max_transfer_blocks = 4;
    auto [d, ch] = open("E", false);
    std::vector<uint8_t> buf(200 * 512);
    Result r;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 200, on_done, &r));  // 50 children
    ASSERT_EQ(32u, f->ops.pending.size());
    f->ops.complete_one();
    f->ops.complete_one(nvme_status::kUnrecoveredReadError);
    f->ops.complete_one();
    f->ops.complete_one(nvme_status::kDataTransferError);
    // No child is sent after a failure: the 30 out drain, then the parent completes.
    EXPECT_EQ(0, r.done);
    while (!f->ops.pending.empty()) {
        f->ops.complete_one();
    }
    pump();
    EXPECT_EQ(1, r.done);
    EXPECT_EQ(0, r.ok);
    EXPECT_TRUE(same(nvme_status::kUnrecoveredReadError, r.status));
    EXPECT_EQ(33u, f->ops.submitted.size());  // 32, and one after the first success
    bdev::IoStats st = iostat(f);
    EXPECT_EQ(1u, st.io_errors);
    EXPECT_EQ(0u, st.num_read_ops);
}

// One bdev_io for the parent and one for a child: the children run one after another,
// each reusing the bdev_io the previous one freed.
TEST_F(PoolSplitTest, SplitsUnderAPoolSmallerThanItsChildren) {
    start_layer(2, 2);
    FakeBdev *f = make_bdev("T", 256);
    f->bdev.optimal_io_boundary = 4;
    auto [d, ch] = open("T", true);
    std::vector<uint8_t> src = pattern(40 * 512, 2);
    Result w;
    ASSERT_EQ(0, bdev::write(d, ch, src.data(), 2, 40, on_done, &w));  // 11 children
    EXPECT_EQ(1u, f->ops.pending.size());
    ASSERT_TRUE(run_to_done(f, w));
    EXPECT_EQ(1, w.ok);
    EXPECT_EQ(11u, f->ops.submitted.size());
    EXPECT_EQ(1u, f->ops.max_pending);
    EXPECT_EQ(0, std::memcmp(f->ops.data.data() + 2 * 512, src.data(), src.size()));

    // Every bdev_io taken: the parent gets one and waits for its first child's on the
    // thread's io-wait queue, behind nobody.
    std::vector<uint8_t> one(512);
    Result other, r;
    std::vector<uint8_t> out(src.size());
    ASSERT_EQ(0, bdev::read(d, ch, one.data(), 100, 1, on_done, &other));
    ASSERT_EQ(0, bdev::read(d, ch, out.data(), 2, 40, on_done, &r));
    EXPECT_EQ(1u, f->ops.pending.size());  // only the other read
    f->ops.complete_one();  // frees a bdev_io: the waiting parent sends its first child
    EXPECT_EQ(1, other.ok);
    ASSERT_EQ(1u, f->ops.pending.size());
    EXPECT_EQ(2u, f->ops.pending.front()->offset_blocks);
    ASSERT_TRUE(run_to_done(f, r));
    EXPECT_EQ(1, r.ok);
    EXPECT_EQ(0, std::memcmp(out.data(), src.data(), src.size()));
}

// Two split requests share four bdev_ios: the first takes them all, the second waits for
// one (the caller's io-wait entry), then its parent waits for a child's; both finish.
TEST_F(PoolSplitTest, TwoSplitRequestsShareATinyPool) {
    start_layer(4, 4);
    FakeBdev *f = make_bdev("U", 256);
    f->bdev.max_transfer_blocks = 2;
    auto [d, ch] = open("U", true);
    std::vector<uint8_t> a = pattern(16 * 512, 3), b = pattern(16 * 512, 4);
    Result ra, rb;
    ASSERT_EQ(0, bdev::write(d, ch, a.data(), 0, 16, on_done, &ra));  // parent + 3 children
    EXPECT_EQ(3u, f->ops.pending.size());
    ASSERT_EQ(-ENOMEM, bdev::write(d, ch, b.data(), 100, 16, on_done, &rb));
    struct Retry {
        bdev::IoWaitEntry entry;
        bdev::Desc *d;
        thread::IoChannel *ch;
        uint8_t *buf;
        Result *r;
    } retry{{}, d, ch, b.data(), &rb};
    retry.entry.cb = [](void *arg) {
        auto *x = static_cast<Retry *>(arg);
        EXPECT_EQ(0, bdev::write(x->d, x->ch, x->buf, 100, 16, on_done, x->r));
    };
    retry.entry.cb_arg = &retry;
    ASSERT_EQ(0, bdev::queue_io_wait(ch, &retry.entry));
    f->ops.complete_one();  // B's parent takes it, and queues for its first child
    EXPECT_EQ(2u, f->ops.pending.size());
    f->ops.complete_one();  // B's first child
    ASSERT_EQ(2u, f->ops.pending.size());
    EXPECT_EQ(100u, f->ops.pending.back()->offset_blocks);
    ASSERT_TRUE(pump_until([&] {
        while (!f->ops.pending.empty()) {
            f->ops.complete_one();
        }
        return ra.done > 0 && rb.done > 0;
    }));
    EXPECT_EQ(1, ra.ok);
    EXPECT_EQ(1, rb.ok);
    EXPECT_EQ(16u, f->ops.submitted.size());
    EXPECT_EQ(0, std::memcmp(f->ops.data.data(), a.data(), a.size()));
    EXPECT_EQ(0, std::memcmp(f->ops.data.data() + 100 * 512, b.data(), b.size()));
}

// Writes, then reads back through a different iovec layout, over many random geometries
// and iovec cuts (unaligned to blocks, empty iovecs), against a model of the disk.
TEST_F(PoolSplitTest, RandomSplitsKeepTheData) {
    start_layer(8, 8);  // children often run short of bdev_ios
    FakeBdev *f = make_bdev("R", 512);
    int splits = 0;
    random_rounds(f, 12345, &splits);
    EXPECT_GT(splits, 100);
}

// The same with a module that needs 512-byte alignment and bounce buffers of 4 KiB: most
// requests are bounced, in children when they exceed one buffer, which often wait for one.
TEST_F(PoolSplitTest, RandomBouncedSplitsKeepTheData) {
    start_iobuf(4096);
    start_layer(8, 8);
    FakeBdev *f = make_bdev("RB", 512);
    f->bdev.required_alignment = 512;
    int splits = 0;
    random_rounds(f, 777, &splits);
    EXPECT_GT(splits, 100);
    EXPECT_EQ(0, f->ops.misaligned_seen);
}

// A misaligned request larger than one bounce buffer runs as children that each bounce
// through their own buffer; the caller sees one request.
TEST_F(PoolSplitTest, BouncesLargerThanOneBufferSplit) {
    start_iobuf(4096);
    start_layer();
    FakeBdev *f = make_bdev("BL", 256);
    f->bdev.required_alignment = 512;
    auto [d, ch] = open("BL", true);
    std::vector<uint8_t> raw(100 * 512 + 1);
    std::vector<uint8_t> src = pattern(100 * 512, 9);
    std::copy(src.begin(), src.end(), raw.begin() + 1);
    iovec odd{raw.data() + 1, src.size()};
    Result w;
    ASSERT_EQ(0, bdev::writev(d, ch, &odd, 1, 3, 100, on_done, &w));
    pump();
    for (BdevIo *io : f->ops.pending) {
        EXPECT_LE(io->num_blocks, 8u);  // 4 KiB bounce buffers
        EXPECT_EQ(1, io->iovcnt);
    }
    EXPECT_EQ(13u, f->ops.pending.size());  // 12 x 8 blocks and 4
    ASSERT_TRUE(run_to_done(f, w));
    EXPECT_EQ(1, w.ok);
    EXPECT_EQ(0, std::memcmp(f->ops.data.data() + 3 * 512, src.data(), src.size()));

    std::vector<uint8_t> back_raw(src.size() + 7, 0);
    iovec back{back_raw.data() + 7, src.size()};
    Result r;
    ASSERT_EQ(0, bdev::readv(d, ch, &back, 1, 3, 100, on_done, &r));
    ASSERT_TRUE(run_to_done(f, r));
    EXPECT_EQ(1, r.ok);
    EXPECT_EQ(0, std::memcmp(back_raw.data() + 7, src.data(), src.size()));
    EXPECT_EQ(0, f->ops.misaligned_seen);
    EXPECT_EQ(back_raw.data() + 7, back.iov_base);  // the caller's iovec as it was
    bdev::IoStats st = iostat(f);
    EXPECT_EQ(1u, st.num_write_ops);
    EXPECT_EQ(1u, st.num_read_ops);
    EXPECT_EQ(src.size(), st.bytes_written);
}

// Bounced children that find no buffer wait for one and resume; none is failed.
TEST_F(PoolSplitTest, BouncedChildrenWaitForBuffers) {
    start_iobuf(4096, thread::kIobufMinPoolCount);
    start_layer();
    FakeBdev *f = make_bdev("BW", 1024);
    f->bdev.required_alignment = 512;
    auto [d, ch] = open("BW", true);
    // Three writes of 32 children each: 96 bounce buffers wanted, 64 exist.
    constexpr int kWrites = 3;
    std::vector<std::vector<uint8_t>> raws;
    Result w[kWrites];
    for (int i = 0; i < kWrites; ++i) {
        std::vector<uint8_t> src = pattern(256 * 512, 20 + i);
        raws.emplace_back(src.size() + 1);
        std::copy(src.begin(), src.end(), raws.back().begin() + 1);
        iovec odd{raws.back().data() + 1, src.size()};
        ASSERT_EQ(0, bdev::writev(d, ch, &odd, 1, i * 256, 256, on_done, &w[i]));
    }
    pump();
    EXPECT_LE(f->ops.pending.size(), thread::kIobufMinPoolCount);
    EXPECT_GT(f->ops.pending.size(), 32u);
    ASSERT_TRUE(pump_until([&] {
        while (!f->ops.pending.empty()) {
            f->ops.complete_one();
        }
        return w[0].done + w[1].done + w[2].done == kWrites;
    }));
    for (int i = 0; i < kWrites; ++i) {
        EXPECT_EQ(1, w[i].ok) << i;
        EXPECT_EQ(0, std::memcmp(f->ops.data.data() + i * 256 * 512, raws[i].data() + 1, 256 * 512))
            << i;
    }
    EXPECT_EQ(0, f->ops.misaligned_seen);
}

// ---- range locks and new channels ----

// A channel created while a compare-and-write holds its range lock knows the lock: its
// overlapping write waits for the compare-and-write, as one from an older channel would.
TEST_F(PoolSplitTest, AChannelCreatedDuringALockRespectsIt) {
    start_layer();
    FakeBdev *f = make_bdev("L", 64);
    f->ops.compare = true;
    auto [d, ch] = open("L", true);
    std::vector<uint8_t> a(512, 0xaa), b(512, 0xbb), c(512, 0xcc);
    iovec av{a.data(), 512}, bv{b.data(), 512};
    Result w0, caw, late;
    ASSERT_EQ(0, bdev::write(d, ch, a.data(), 5, 1, on_done, &w0));
    ASSERT_TRUE(run_to_done(f, w0));
    ASSERT_EQ(0, bdev::comparev_and_writev(d, ch, &av, 1, &bv, 1, 5, 1, on_done, &caw));
    ASSERT_TRUE(pump_until([&] { return f->ops.pending.size() == 1; }));
    ASSERT_EQ(IoType::Compare, f->ops.pending.front()->type);  // the lock is held

    thread::Thread *t2 = add_thread("late");
    bdev::Desc *d2 = nullptr;
    thread::IoChannel *ch2 = nullptr;
    on(t2, [&] {
        ASSERT_EQ(0, bdev::open("L", true, nullptr, &d2));
        ch2 = bdev::get_io_channel(d2);
        ASSERT_NE(nullptr, ch2);
        EXPECT_EQ(0, bdev::write(d2, ch2, c.data(), 5, 1, on_done, &late));
    });
    pump();
    EXPECT_EQ(1u, f->ops.pending.size());  // the late write is held
    f->ops.complete_one();                 // the compare matches: the write of b follows
    ASSERT_TRUE(pump_until([&] { return f->ops.pending.size() == 1; }));
    EXPECT_EQ(0, std::memcmp(f->ops.pending.front()->iovs[0].iov_base, b.data(), 512));
    f->ops.complete_one();
    // Unlocked: the late write runs on its own thread, and completes there.
    ASSERT_TRUE(pump_until([&] { return caw.done == 1 && f->ops.pending.size() == 1; }));
    EXPECT_EQ(1, caw.ok);
    on(t2, [&] { f->ops.complete_one(); });
    ASSERT_TRUE(pump_until([&] { return late.done == 1; }));
    EXPECT_EQ(1, late.ok);
    EXPECT_EQ(0, std::memcmp(f->ops.data.data() + 5 * 512, c.data(), 512));
    on(t2, [&] {
        thread::put_io_channel(ch2);
        bdev::close(d2);
    });
    pump();
}

// ---- aborting a split request ----

// Each child at the module gets an Abort; children not yet sent never are.
TEST_F(PoolSplitTest, AbortRecallsASplitRequestChildByChild) {
    start_layer();
    FakeBdev *f = make_bdev("A", 512);
    f->ops.abort = true;
    f->bdev.optimal_io_boundary = 8;
    auto [d, ch] = open("A", true);
    std::vector<uint8_t> src = pattern(320 * 512, 3);  // 40 children, 32 at once
    Result w, ab;
    ASSERT_EQ(0, bdev::write(d, ch, src.data(), 0, 320, on_done, &w));
    ASSERT_EQ(32u, f->ops.pending.size());
    ASSERT_EQ(0, bdev::abort(d, ch, &w, on_done, &ab));
    pump();
    EXPECT_EQ(1, ab.ok);
    EXPECT_EQ(1, w.done);
    EXPECT_TRUE(same(nvme_status::kAbortedByRequest, w.status));
    EXPECT_TRUE(f->ops.pending.empty());
    size_t writes = 0, aborts = 0;
    for (const auto &[type, off] : f->ops.submitted) {
        writes += type == IoType::Write ? 1 : 0;
        aborts += type == IoType::Abort ? 1 : 0;
    }
    EXPECT_EQ(32u, writes);
    EXPECT_EQ(32u, aborts);
    // The channel goes on as before.
    Result r;
    ASSERT_EQ(0, bdev::read(d, ch, src.data(), 0, 8, on_done, &r));
    ASSERT_TRUE(run_to_done(f, r));
    EXPECT_EQ(1, r.ok);
}

// A module that cannot abort: the abort fails and the request goes on untouched.
TEST_F(PoolSplitTest, AbortOfASplitRequestFailsWhenTheModuleCannotAbort) {
    start_layer();
    FakeBdev *f = make_bdev("NA", 64);
    f->bdev.optimal_io_boundary = 8;
    auto [d, ch] = open("NA", true);
    std::vector<uint8_t> src = pattern(64 * 512, 4);
    Result w, ab;
    ASSERT_EQ(0, bdev::write(d, ch, src.data(), 0, 64, on_done, &w));
    ASSERT_EQ(8u, f->ops.pending.size());
    ASSERT_EQ(0, bdev::abort(d, ch, &w, on_done, &ab));
    pump();
    EXPECT_EQ(1, ab.done);
    EXPECT_EQ(0, ab.ok);
    EXPECT_EQ(0, w.done);
    ASSERT_TRUE(run_to_done(f, w));
    EXPECT_EQ(1, w.ok);
    EXPECT_EQ(0, std::memcmp(f->ops.data.data(), src.data(), src.size()));
}

// Bounced children waiting for a buffer are recalled by the layer itself, so the abort
// needs nothing from the module.
TEST_F(PoolSplitTest, AbortRecallsBouncedChildrenWaitingForBuffers) {
    start_iobuf(4096);
    start_layer();
    FakeBdev *f = make_bdev("AB", 1024);
    f->bdev.required_alignment = 512;
    auto [d, ch] = open("AB", true);
    // Reads without a buffer take every 4 KiB buffer; the last few wait.
    constexpr int kReads = 70;
    std::vector<Result> reads(kReads);
    for (int i = 0; i < kReads; ++i) {
        ASSERT_EQ(0, bdev::read(d, ch, nullptr, i * 8, 8, on_done, &reads[i]));
    }
    pump();
    size_t held = f->ops.pending.size();
    ASSERT_LT(held, static_cast<size_t>(kReads));
    std::vector<uint8_t> raw(64 * 512 + 1);
    iovec odd{raw.data() + 1, 64 * 512};
    Result w, ab;
    ASSERT_EQ(0, bdev::writev(d, ch, &odd, 1, 600, 64, on_done, &w));  // 8 children
    pump();
    EXPECT_EQ(held, f->ops.pending.size());  // every child waits behind the reads
    ASSERT_EQ(0, bdev::abort(d, ch, &w, on_done, &ab));
    pump();
    EXPECT_EQ(1, ab.ok);
    EXPECT_EQ(1, w.done);
    EXPECT_TRUE(same(nvme_status::kAbortedByRequest, w.status));
    ASSERT_TRUE(pump_until([&] {
        while (!f->ops.pending.empty()) {
            f->ops.complete_one();
        }
        int ok = 0;
        for (const Result &r : reads) {
            ok += r.ok;
        }
        return ok == kReads;
    }));
    for (const auto &[type, off] : f->ops.submitted) {
        EXPECT_EQ(IoType::Read, type);  // no write reached the module
    }
}

TEST_F(PoolSplitTest, ABlockBeyondTheIovecLimitFailsOutsideSubmit) {
    start_layer();
    FakeBdev *f = make_bdev("V", 64);
    f->bdev.optimal_io_boundary = 4;
    auto [d, ch] = open("V", true);
    // 16-byte iovecs: one 512-byte block needs 32 of them, a child carries at most 16.
    std::vector<uint8_t> buf(8 * 512);
    std::vector<iovec> iov;
    for (size_t off = 0; off < buf.size(); off += 16) {
        iov.push_back({buf.data() + off, 16});
    }
    Result r;
    ASSERT_EQ(0, bdev::writev(d, ch, iov.data(), static_cast<int>(iov.size()), 2, 8, on_done, &r));
    EXPECT_EQ(0, r.done);  // never inside submit
    EXPECT_EQ(0u, f->ops.submitted.size());
    pump();
    EXPECT_EQ(1, r.done);
    EXPECT_TRUE(same(nvme_status::kInvalidField, r.status));
}

TEST_F(PoolSplitTest, EmulatedWriteZeroesRunsItsWritesTogether) {
    start_layer();
    FakeBdev *f = make_bdev("Z", 64);
    std::fill(f->ops.data.begin(), f->ops.data.end(), 0x5a);
    f->bdev.max_transfer_blocks = 5;
    f->bdev.optimal_io_boundary = 16;
    auto [d, ch] = open("Z", true);
    Result r;
    ASSERT_EQ(0, bdev::write_zeroes(d, ch, 30, 14, on_done, &r));
    std::vector<std::pair<uint64_t, uint64_t>> writes;
    for (BdevIo *io : f->ops.pending) {
        EXPECT_EQ(IoType::Write, io->type);
        writes.emplace_back(io->offset_blocks, io->num_blocks);
    }
    // Within the transfer limit, and not across the boundary at 32.
    EXPECT_EQ((std::vector<std::pair<uint64_t, uint64_t>>{{30, 2}, {32, 5}, {37, 5}, {42, 2}}),
              writes);
    ASSERT_TRUE(run_to_done(f, r));
    EXPECT_EQ(1, r.ok);
    for (size_t i = 0; i < f->ops.data.size(); ++i) {
        ASSERT_EQ(i >= 30 * 512 && i < 44 * 512 ? 0 : 0x5a, f->ops.data[i]) << i;
    }
    bdev::IoStats st = iostat(f);
    EXPECT_EQ(1u, st.num_other_ops);  // the write zeroes, not its writes
    EXPECT_EQ(0u, st.num_write_ops);
}

// A reset waits for outstanding children like any I/O; children sent after the freeze are
// aborted, and their parent completes once with that status.
TEST_F(PoolSplitTest, ResetFreezesSplitChildren) {
    start_layer(3, 3);  // the parent, one child, and then the reset
    FakeBdev *f = make_bdev("X", 64);
    f->bdev.optimal_io_boundary = 8;
    auto [d, ch] = open("X", true);
    std::vector<uint8_t> src = pattern(32 * 512, 5), one(512);
    Result x, w, reset;
    ASSERT_EQ(0, bdev::read(d, ch, one.data(), 40, 1, on_done, &x));
    ASSERT_EQ(0, bdev::write(d, ch, src.data(), 0, 32, on_done, &w));  // 4 children
    ASSERT_EQ(2u, f->ops.pending.size());
    f->ops.complete_one();  // the read: its bdev_io is for the reset
    EXPECT_EQ(1, x.ok);
    ASSERT_EQ(0, bdev::reset(d, ch, on_done, &reset));
    pump();  // every channel frozen; the drain poller waits for the child
    EXPECT_EQ(0, reset.done);
    f->ops.complete_one();  // the next child meets the freeze and is aborted
    ASSERT_TRUE(pump_until([&] { return w.done == 1; }));
    EXPECT_TRUE(same(nvme_status::kAbortedSqDeletion, w.status));
    ASSERT_TRUE(pump_until([&] { return f->ops.pending.size() == 1; }));
    EXPECT_EQ(IoType::Reset, f->ops.pending.front()->type);
    f->ops.complete_one();
    ASSERT_TRUE(pump_until([&] { return reset.done == 1; }));
    EXPECT_EQ(1, reset.ok);
    EXPECT_EQ(1, w.done);
}

}  // namespace
