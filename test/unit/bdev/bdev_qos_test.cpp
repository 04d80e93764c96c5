// QoS rate limits: per-channel admission against shared budgets, driven timeslice by
// timeslice (the pollers are put on a manual clock), the RPC and its config entry.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <vector>

#include "../common/eal_env.h"
#include "../common/poll_threads.h"
#include "bdev_internal.h"
#include "fake_bdev.h"
#include "flint/bdev/module.h"
#include "flint/event/app.h"
#include "flint/event/subsystem.h"
#include "flint/jsonrpc/jsonrpc.h"
#include "flint/util/time.h"

using namespace flint;
using bdev::BdevIo;
using bdev::IoType;
using test::FakeOps;
using test::on_done;
using test::Result;

namespace {

FLINT_TEST_EAL_ENV("bdev_qos_test");

class BdevQosTest : public ::testing::Test {
protected:
    void SetUp() override {
        bdev::qos_set_manual_clock(true);
        thread::lib_init({});
        t_ = thread::create("qos_test");
        thread::set_current(t_);
        ASSERT_EQ(0, bdev::layer_init());
        bdev::register_subsystem();  // the RPCs
        event::rpc_registry().set_state(jsonrpc::kRuntime);
        thread::io_device_register(&ops_, nullptr, nullptr, 0, "fake");
        ops_.flush = true;
        ops_.compare = true;
        ops_.config_name = "Fake0";
        b_.name = "Fake0";
        b_.block_size = 512;
        b_.num_blocks = 64;
        b_.module = &test::g_fake_module;
        b_.ops = &ops_;
        ASSERT_EQ(0, bdev::register_bdev(&b_));
        buf_.assign(64 * 512, 0);
    }
    void TearDown() override {
        if (!removed_) {
            remove();
        }
        bool fini = false;
        bdev::layer_fini([&] { fini = true; });
        pump();
        EXPECT_TRUE(fini);
        bool unreg = false;
        thread::io_device_unregister(&ops_, [&] { unreg = true; });
        pump();
        EXPECT_TRUE(unreg);
        test::exit_threads({t2_, t_});
        EXPECT_TRUE(thread::lib_fini());
        bdev::qos_set_manual_clock(false);
    }
    void remove() {
        int rc = -1;
        ASSERT_EQ(0, bdev::unregister_bdev(&b_, [&](int r) { rc = r; }));
        pump();
        EXPECT_EQ(0, rc);
        EXPECT_TRUE(ops_.destructed);
        removed_ = true;
    }
    // Runs the threads' messages and pollers for a while, as their reactors would.
    void pump(int rounds = 20) { test::poll_threads({t_, t2_}, t_, rounds); }
    template <class P>
    bool pump_until(P pred) {
        return test::step_until([&] { pump(1); }, pred);
    }
    // Calls a method as the RPC server would; returns the whole response.
    Json::Value rpc(const std::string &method, const Json::Value &params) {
        Json::Value resp;
        bool got = false;
        auto req = std::make_shared<jsonrpc::Request>(method, params, Json::Value(1),
                                                      [&](const Json::Value &r) {
                                                          resp = r;
                                                          got = true;
                                                      });
        event::rpc_registry().dispatch(req);
        req.reset();
        EXPECT_TRUE(pump_until([&] { return got; })) << method;
        return resp;
    }
    void set_qos(const Json::Value &limits) {
        Json::Value p = limits;
        p["name"] = "Fake0";
        Json::Value resp = rpc("bdev_set_qos_limit", p);
        ASSERT_TRUE(resp.isMember("result")) << jsonrpc::to_string(resp);
        ASSERT_TRUE(resp["result"].asBool());
    }
    static Json::Value limits(const char *k1, uint64_t v1, const char *k2 = nullptr,
                              uint64_t v2 = 0) {
        Json::Value p(Json::objectValue);
        p[k1] = static_cast<Json::UInt64>(v1);
        if (k2 != nullptr) {
            p[k2] = static_cast<Json::UInt64>(v2);
        }
        return p;
    }
    // One timeslice passes: the budgets are refilled and each channel admits what fits.
    void tick(std::initializer_list<thread::IoChannel *> chans) {
        bdev::Qos *q = b_.state->qos.get();
        ASSERT_NE(nullptr, q);
        bdev::qos_refill(q, 1);
        for (thread::IoChannel *ch : chans) {
            bdev::qos_poll_channel(bdev::bdev_channel(ch));
        }
    }
    void open(bool write = true) {
        ASSERT_EQ(0, bdev::open("Fake0", write, nullptr, &d_));
        ch_ = bdev::get_io_channel(d_);
        ASSERT_NE(nullptr, ch_);
    }
    void close() {
        thread::put_io_channel(ch_);
        bdev::close(d_);
        pump();
    }
    // A channel on a second thread, t2; null if it did not come.
    thread::IoChannel *open_on_t2() {
        t2_ = thread::create("qos_test2");
        thread::IoChannel *ch2 = nullptr;
        thread::send_fn(t2_, [&] { ch2 = bdev::get_io_channel(d_); });
        EXPECT_TRUE(pump_until([&] { return ch2 != nullptr; }));
        return ch2;
    }
    // Completes what the module holds, each I/O on the thread that submitted it (t2 for
    // ch2's), then puts ch2 on t2.
    void complete_on_own_threads(thread::IoChannel *ch2) {
        std::deque<BdevIo *> mine, theirs;
        for (BdevIo *io : ops_.pending) {
            (io->priv->ch == bdev::bdev_channel(ch2) ? theirs : mine).push_back(io);
        }
        ops_.pending.clear();
        for (BdevIo *io : mine) {
            bdev::io_complete(io, bdev::nvme_status::kSuccess);
        }
        bool done = false;
        thread::send_fn(t2_, [&] {
            for (BdevIo *io : theirs) {
                bdev::io_complete(io, bdev::nvme_status::kSuccess);
            }
            thread::put_io_channel(ch2);
            done = true;
        });
        EXPECT_TRUE(pump_until([&] { return done; }));
    }
    void complete_all() {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        pump();
    }
    int read(uint64_t off, uint64_t num, Result *r, thread::IoChannel *ch = nullptr) {
        return bdev::read(d_, ch != nullptr ? ch : ch_, buf_.data(), off, num, on_done, r);
    }
    int write(uint64_t off, uint64_t num, Result *r) {
        return bdev::write(d_, ch_, buf_.data(), off, num, on_done, r);
    }

    thread::Thread *t_ = nullptr;
    thread::Thread *t2_ = nullptr;
    FakeOps ops_;
    bdev::Bdev b_;
    bool removed_ = false;
    bdev::Desc *d_ = nullptr;
    thread::IoChannel *ch_ = nullptr;
    std::vector<uint8_t> buf_;
};

TEST_F(BdevQosTest, IopsLimitAdmitsOnePerTimesliceInOrder) {
    open();
    set_qos(limits("rw_ios_per_sec", 1000));  // one I/O per 1 ms timeslice
    EXPECT_NE(nullptr, bdev::bdev_channel(ch_)->qos);
    Result r;
    for (uint64_t i = 0; i < 10; ++i) {
        ASSERT_EQ(0, read(i, 1, &r));
    }
    EXPECT_EQ(1u, ops_.pending.size());  // the first timeslice's budget
    for (size_t n = 2; n <= 10; ++n) {
        tick({ch_});
        EXPECT_EQ(n, ops_.pending.size());
    }
    tick({ch_});
    EXPECT_EQ(10u, ops_.pending.size());
    for (uint64_t i = 0; i < 10; ++i) {
        EXPECT_EQ(i, ops_.submitted[i].second) << "FIFO order";
    }
    complete_all();
    EXPECT_EQ(10, r.ok);
    close();
}

TEST_F(BdevQosTest, UnusedBudgetIsBankedUpToTenTimeslices) {
    open();
    set_qos(limits("rw_ios_per_sec", 2000));  // two per timeslice
    for (int i = 0; i < 15; ++i) {
        tick({ch_});  // idle timeslices
    }
    Result r;
    for (uint64_t i = 0; i < 25; ++i) {
        ASSERT_EQ(0, read(i % 64, 1, &r));
    }
    EXPECT_EQ(20u, ops_.pending.size());  // a burst of ten timeslices, no more
    tick({ch_});
    EXPECT_EQ(22u, ops_.pending.size());
    // A late refill grants the timeslices it missed, and the backlog beyond a timeslice
    // goes at once to the channels that wait.
    bdev::qos_refill(b_.state->qos.get(), 3);
    bdev::qos_poll_channel(bdev::bdev_channel(ch_));
    EXPECT_EQ(25u, ops_.pending.size());
    complete_all();
    EXPECT_EQ(25, r.ok);
    // A late refill while nothing waits (the reactors were busy for a second) banks no more
    // than ten timeslices either.
    bdev::qos_refill(b_.state->qos.get(), 1000);
    Result late;
    for (uint64_t i = 0; i < 25; ++i) {
        ASSERT_EQ(0, read(i % 64, 1, &late));
    }
    EXPECT_EQ(20u, ops_.pending.size());
    while (late.done < 25) {
        complete_all();
        tick({ch_});
    }
    EXPECT_EQ(25, late.ok);
    close();
}

TEST_F(BdevQosTest, LargeIoOverdrawsAndItsDebtDelaysTheNext) {
    open();
    // 1 MiB/s: 1048 bytes per timeslice. A 16 KiB read overdraws by 15336 bytes, which
    // takes 15 timeslices to pay back.
    set_qos(limits("rw_mbytes_per_sec", 1));
    Result r;
    ASSERT_EQ(0, read(0, 32, &r));
    ASSERT_EQ(0, read(32, 1, &r));
    EXPECT_EQ(1u, ops_.pending.size());  // admitted on a positive budget, however large
    for (int i = 0; i < 14; ++i) {
        tick({ch_});
    }
    EXPECT_EQ(1u, ops_.pending.size());
    tick({ch_});
    EXPECT_EQ(2u, ops_.pending.size());
    complete_all();
    EXPECT_EQ(2, r.ok);
    close();
}

TEST_F(BdevQosTest, ReadAndWriteByteLimitsApplySeparately) {
    open();
    set_qos(limits("r_mbytes_per_sec", 1));  // reads only
    Result r;
    ASSERT_EQ(0, read(0, 32, &r));  // read debt: 15 timeslices
    ASSERT_EQ(0, write(0, 32, &r));
    ASSERT_EQ(0, write(0, 32, &r));
    EXPECT_EQ(3u, ops_.pending.size());                     // writes are not limited
    ASSERT_EQ(0, read(32, 1, &r));                          // held by the read debt
    ASSERT_EQ(0, write(40, 1, &r));                         // queues behind it: FIFO per channel
    ASSERT_EQ(0, bdev::flush(d_, ch_, 0, 1, on_done, &r));  // not a limited type
    EXPECT_EQ(4u, ops_.pending.size());
    EXPECT_EQ(IoType::Flush, ops_.pending.back()->type);
    for (int i = 0; i < 15; ++i) {
        tick({ch_});
    }
    EXPECT_EQ(6u, ops_.pending.size());
    complete_all();

    // Now writes only: a large write's debt holds writes, and reads pass.
    set_qos(limits("r_mbytes_per_sec", 0, "w_mbytes_per_sec", 1));
    ASSERT_EQ(0, write(0, 32, &r));
    ASSERT_EQ(0, read(0, 32, &r));
    EXPECT_EQ(2u, ops_.pending.size());
    ASSERT_EQ(0, write(0, 1, &r));
    EXPECT_EQ(2u, ops_.pending.size());
    for (int i = 0; i < 15; ++i) {
        tick({ch_});
    }
    EXPECT_EQ(3u, ops_.pending.size());
    complete_all();

    // rw bytes count both directions; compare counts as a read.
    set_qos(limits("w_mbytes_per_sec", 0, "rw_mbytes_per_sec", 1));
    iovec iov{buf_.data(), 32 * 512};
    ASSERT_EQ(0, bdev::comparev(d_, ch_, &iov, 1, 0, 32, on_done, &r));
    ASSERT_EQ(0, write(0, 1, &r));
    EXPECT_EQ(1u, ops_.pending.size());
    for (int i = 0; i < 15; ++i) {
        tick({ch_});
    }
    EXPECT_EQ(2u, ops_.pending.size());
    complete_all();
    EXPECT_EQ(11, r.ok);
    close();
}

TEST_F(BdevQosTest, ChangingLimitsTakesEffectAtTheNextTimeslice) {
    open();
    set_qos(limits("rw_ios_per_sec", 1000));
    bdev::Qos *q = b_.state->qos.get();
    Result r;
    for (uint64_t i = 0; i < 8; ++i) {
        ASSERT_EQ(0, read(i, 1, &r));
    }
    EXPECT_EQ(1u, ops_.pending.size());
    set_qos(limits("rw_ios_per_sec", 3000));
    EXPECT_EQ(q, b_.state->qos.get());  // updated in place
    tick({ch_});
    EXPECT_EQ(4u, ops_.pending.size());
    // Another limit set alone keeps the first (as SPDK does).
    set_qos(limits("w_mbytes_per_sec", 7));
    Json::Value bdevs = rpc("bdev_get_bdevs", Json::Value())["result"];
    ASSERT_EQ(1u, bdevs.size());
    const Json::Value &lim = bdevs[0]["assigned_rate_limits"];
    EXPECT_EQ(3000u, lim["rw_ios_per_sec"].asUInt64());
    EXPECT_EQ(0u, lim["rw_mbytes_per_sec"].asUInt64());
    EXPECT_EQ(0u, lim["r_mbytes_per_sec"].asUInt64());
    EXPECT_EQ(7u, lim["w_mbytes_per_sec"].asUInt64());
    tick({ch_});
    EXPECT_EQ(7u, ops_.pending.size());
    tick({ch_});
    EXPECT_EQ(8u, ops_.pending.size());
    complete_all();
    close();
}

TEST_F(BdevQosTest, DisablingReleasesHeldIo) {
    open();
    set_qos(limits("rw_ios_per_sec", 1000, "r_mbytes_per_sec", 2));
    Result r;
    for (uint64_t i = 0; i < 5; ++i) {
        ASSERT_EQ(0, read(i, 1, &r));
    }
    EXPECT_EQ(1u, ops_.pending.size());
    set_qos(limits("rw_ios_per_sec", 0, "r_mbytes_per_sec", 0));
    EXPECT_EQ(5u, ops_.pending.size());
    EXPECT_EQ(nullptr, bdev::bdev_channel(ch_)->qos);
    EXPECT_EQ(nullptr, bdev::bdev_channel(ch_)->qos_poller);
    EXPECT_EQ(nullptr, b_.state->qos.get());
    for (uint64_t i = 0; i < 5; ++i) {
        EXPECT_EQ(i, ops_.submitted[i].second);
    }
    ASSERT_EQ(0, read(0, 1, &r));  // unlimited again
    EXPECT_EQ(6u, ops_.pending.size());
    set_qos(limits("rw_ios_per_sec", 0));  // disabling what is off: nothing to do
    EXPECT_EQ(nullptr, b_.state->qos.get());
    complete_all();
    EXPECT_EQ(6, r.ok);
    close();
}

TEST_F(BdevQosTest, ChannelCreatedAfterEnablingIsLimited) {
    set_qos(limits("rw_ios_per_sec", 1000));
    open();
    EXPECT_NE(nullptr, bdev::bdev_channel(ch_)->qos);
    EXPECT_NE(nullptr, bdev::bdev_channel(ch_)->qos_poller);
    Result r;
    for (uint64_t i = 0; i < 3; ++i) {
        ASSERT_EQ(0, read(i, 1, &r));
    }
    EXPECT_EQ(1u, ops_.pending.size());
    tick({ch_});
    tick({ch_});
    EXPECT_EQ(3u, ops_.pending.size());
    complete_all();
    close();
}

TEST_F(BdevQosTest, ChannelsOnTwoThreadsShareTheBudget) {
    open();
    thread::IoChannel *ch2 = open_on_t2();
    ASSERT_NE(nullptr, ch2);
    set_qos(limits("rw_ios_per_sec", 1000));
    EXPECT_NE(nullptr, bdev::bdev_channel(ch2)->qos);
    Result r1, r2;
    ASSERT_EQ(0, read(0, 1, &r1));
    bool submitted = false;
    thread::send_fn(t2_, [&] {
        EXPECT_EQ(0, read(1, 1, &r2, ch2));
        EXPECT_EQ(0, read(2, 1, &r2, ch2));
        submitted = true;
    });
    ASSERT_TRUE(pump_until([&] { return submitted; }));
    EXPECT_EQ(1u, ops_.pending.size());  // one budget for both channels
    bool ran = false;
    thread::send_fn(t2_, [&] {
        tick({ch2});
        ran = true;
    });
    ASSERT_TRUE(pump_until([&] { return ran; }));
    EXPECT_EQ(2u, ops_.pending.size());
    // Disabling walks both threads and releases what t2's channel still holds.
    set_qos(limits("rw_ios_per_sec", 0));
    EXPECT_EQ(3u, ops_.pending.size());
    EXPECT_EQ(nullptr, bdev::bdev_channel(ch2)->qos);
    // The module completes on the submitting thread.
    complete_on_own_threads(ch2);
    ASSERT_TRUE(pump_until([&] { return r2.done == 2; }));
    pump();
    EXPECT_EQ(1, r1.ok);
    EXPECT_EQ(2, r2.ok);
    close();
}

TEST_F(BdevQosTest, BusyChannelsShareTheBudgetFairly) {
    open();
    thread::IoChannel *ch2 = open_on_t2();
    ASSERT_NE(nullptr, ch2);
    set_qos(limits("rw_ios_per_sec", 8000));
    Result r1, r2;
    for (uint64_t i = 0; i < 16; ++i) {
        ASSERT_EQ(0, read(i, 1, &r1));  // the first timeslice's 8, then 8 held
    }
    bool submitted = false;
    thread::send_fn(t2_, [&] {
        for (uint64_t i = 0; i < 8; ++i) {
            EXPECT_EQ(0, read(32 + i, 1, &r2, ch2));
        }
        submitted = true;
    });
    ASSERT_TRUE(pump_until([&] { return submitted; }));
    EXPECT_EQ(8u, ops_.pending.size());
    // Each refill starts an epoch in which each waiting channel may take an equal share:
    // the channel that polls first after the refill does not take it all.
    auto poll2 = [&] {
        int n = -1;
        thread::send_fn(t2_, [&] { n = bdev::qos_poll_channel(bdev::bdev_channel(ch2)); });
        EXPECT_TRUE(pump_until([&] { return n >= 0; }));
        return n;
    };
    bdev::qos_refill(b_.state->qos.get(), 1);
    EXPECT_EQ(4, bdev::qos_poll_channel(bdev::bdev_channel(ch_)));
    EXPECT_EQ(0, bdev::qos_poll_channel(bdev::bdev_channel(ch_)));  // its share is used
    EXPECT_EQ(4, poll2());
    bdev::qos_refill(b_.state->qos.get(), 1);
    EXPECT_EQ(4, poll2());
    EXPECT_EQ(4, bdev::qos_poll_channel(bdev::bdev_channel(ch_)));
    EXPECT_EQ(24u, ops_.pending.size());
    size_t theirs = 0;
    for (BdevIo *io : ops_.pending) {
        theirs += io->offset_blocks >= 32 ? 1 : 0;
    }
    EXPECT_EQ(8u, theirs);
    // With one channel waiting, the whole timeslice is its share.
    for (uint64_t i = 0; i < 8; ++i) {
        ASSERT_EQ(0, read(16 + i, 1, &r1));
    }
    bdev::qos_refill(b_.state->qos.get(), 1);
    EXPECT_EQ(8, bdev::qos_poll_channel(bdev::bdev_channel(ch_)));
    set_qos(limits("rw_ios_per_sec", 0));
    EXPECT_EQ(32u, ops_.pending.size());
    complete_on_own_threads(ch2);
    ASSERT_TRUE(pump_until([&] { return r2.done == 8; }));
    pump();
    EXPECT_EQ(24, r1.ok);
    EXPECT_EQ(8, r2.ok);
    close();
}

TEST_F(BdevQosTest, AbortRecallsHeldIo) {
    open();
    set_qos(limits("rw_ios_per_sec", 1000));
    Result a, b, c, ab;
    ASSERT_EQ(0, read(0, 1, &a));
    ASSERT_EQ(0, read(1, 1, &b));
    ASSERT_EQ(0, read(2, 1, &c));
    EXPECT_EQ(1u, ops_.pending.size());
    ASSERT_EQ(0, bdev::abort(d_, ch_, &b, on_done, &ab));
    pump();
    EXPECT_EQ(1, ab.ok);
    EXPECT_EQ(1, b.done);
    EXPECT_EQ(bdev::nvme_status::kAbortedByRequest.sc, b.status.sc);
    tick({ch_});  // c is next, and took b's place
    ASSERT_EQ(2u, ops_.pending.size());
    EXPECT_EQ(2u, ops_.pending.back()->offset_blocks);
    complete_all();
    EXPECT_EQ(1, a.ok);
    EXPECT_EQ(1, c.ok);
    close();
}

TEST_F(BdevQosTest, ResetAbortsHeldIoAndDoesNotWaitForIt) {
    open();
    set_qos(limits("rw_ios_per_sec", 1000));
    Result inflight, held, reset;
    ASSERT_EQ(0, read(0, 1, &inflight));
    ASSERT_EQ(0, read(1, 1, &held));
    ASSERT_EQ(0, read(2, 1, &held));
    EXPECT_EQ(1u, ops_.pending.size());
    ASSERT_EQ(0, bdev::reset(d_, ch_, on_done, &reset));
    pump();
    EXPECT_EQ(2, held.done);  // aborted at the freeze, not run within the reset
    EXPECT_EQ(0, held.ok);
    EXPECT_EQ(bdev::nvme_status::kAbortedSqDeletion.sc, held.status.sc);
    EXPECT_EQ(nullptr, bdev::bdev_channel(ch_)->qos_head);
    Result during;
    ASSERT_EQ(0, read(3, 1, &during));  // frozen: aborted at once, no budget taken
    pump();
    EXPECT_EQ(1, during.done);
    EXPECT_EQ(0, during.ok);
    ops_.complete_one();  // the read in flight: the drain can finish
    ASSERT_TRUE(pump_until([&] { return ops_.pending.size() == 1; }));
    EXPECT_EQ(IoType::Reset, ops_.pending.front()->type);
    ops_.complete_one();
    ASSERT_TRUE(pump_until([&] { return reset.done == 1; }));
    EXPECT_EQ(1, reset.ok);
    EXPECT_EQ(1, inflight.ok);
    Result after;  // thawed, and still limited
    tick({ch_});
    ASSERT_EQ(0, read(4, 1, &after));
    ASSERT_EQ(0, read(5, 1, &after));
    EXPECT_EQ(1u, ops_.pending.size());
    tick({ch_});
    EXPECT_EQ(2u, ops_.pending.size());
    complete_all();
    EXPECT_EQ(2, after.ok);
    close();
}

TEST_F(BdevQosTest, UnregisterWithHeldIoCompletesCleanly) {
    int events = 0;
    ASSERT_EQ(0, bdev::open(
                     "Fake0", false, [&](bdev::EventType, bdev::Bdev *) { ++events; }, &d_));
    ch_ = bdev::get_io_channel(d_);
    set_qos(limits("rw_ios_per_sec", 1000, "rw_mbytes_per_sec", 10));
    Result r;
    for (uint64_t i = 0; i < 4; ++i) {
        ASSERT_EQ(0, read(i, 1, &r));
    }
    int rc = -1;
    ASSERT_EQ(0, bdev::unregister_bdev(&b_, [&](int x) { rc = x; }));
    pump();
    EXPECT_EQ(1, events);
    // The owner drains its I/O (held I/O still gets budget), then closes.
    while (r.done < 4) {
        tick({ch_});
        complete_all();
    }
    EXPECT_EQ(4, r.ok);
    EXPECT_EQ(-1, rc);
    close();
    EXPECT_EQ(0, rc);
    EXPECT_TRUE(ops_.destructed);
    removed_ = true;
}

TEST_F(BdevQosTest, UnregisterFreesLimitsWithoutChannels) {
    set_qos(limits("rw_ios_per_sec", 5000));
    EXPECT_NE(nullptr, b_.state->qos.get());
    remove();
    EXPECT_EQ(nullptr, b_.state->qos.get());
}

TEST_F(BdevQosTest, RealTimePacing) {
    bdev::qos_set_manual_clock(false);
    open();
    // Taken before the limit starts its first timeslice: the fifth I/O then waits at least
    // four timeslices; the bound below leaves one for clock error.
    auto t0 = std::chrono::steady_clock::now();
    set_qos(limits("rw_ios_per_sec", 1000));
    Result r;
    for (uint64_t i = 0; i < 5; ++i) {
        ASSERT_EQ(0, read(i, 1, &r));
    }
    ASSERT_TRUE(pump_until([&] { return ops_.pending.size() == 5; }));
    // One I/O per elapsed millisecond after the first (late refills catch up, never more).
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::microseconds(3000));
    complete_all();
    EXPECT_EQ(5, r.ok);
    close();
}

TEST_F(BdevQosTest, ChannelsRefillWhenTheAppThreadIsLate) {
    bdev::qos_set_manual_clock(false);
    open();
    thread::IoChannel *ch2 = open_on_t2();
    ASSERT_NE(nullptr, ch2);
    set_qos(limits("rw_ios_per_sec", 1000));
    Result r;
    thread::send_fn(t2_, [&] {
        for (uint64_t i = 0; i < 5; ++i) {
            EXPECT_EQ(0, read(i, 1, &r, ch2));
        }
    });
    // Only t2 runs: the app thread (t_), whose poller refills, is stuck.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ops_.pending.size() < 5 && std::chrono::steady_clock::now() < deadline) {
        thread::set_current(nullptr);
        t2_->poll(64, util::ticks());
    }
    thread::set_current(t_);
    EXPECT_EQ(5u, ops_.pending.size());
    complete_on_own_threads(ch2);
    ASSERT_TRUE(pump_until([&] { return r.done == 5; }));
    EXPECT_EQ(5, r.ok);
    close();
}

TEST_F(BdevQosTest, ConcurrentChangeIsRefused) {
    open();
    Json::Value p = limits("rw_ios_per_sec", 1000);
    p["name"] = "Fake0";
    Json::Value first, second;
    auto call = [&](Json::Value *out) {
        auto req = std::make_shared<jsonrpc::Request>("bdev_set_qos_limit", p, Json::Value(1),
                                                      [out](const Json::Value &r) { *out = r; });
        event::rpc_registry().dispatch(req);
    };
    call(&first);  // its walk over the channels needs this thread to poll
    call(&second);
    ASSERT_TRUE(second.isMember("error")) << jsonrpc::to_string(second);
    EXPECT_EQ(jsonrpc::kInvalidParams, second["error"]["code"].asInt());
    EXPECT_EQ("Failed to configure rate limit: Resource temporarily unavailable",
              second["error"]["message"].asString());
    ASSERT_TRUE(pump_until([&] { return first.isMember("result"); }));
    close();
}

TEST_F(BdevQosTest, RpcErrors) {
    struct Case {
        const char *params;
        int code;
        const char *message_part;
    };
    const Case cases[] = {
        {R"({"rw_ios_per_sec": 1000})", jsonrpc::kInvalidParams, "'name'"},
        {R"({"name": "Nope", "rw_ios_per_sec": 1000})", -ENODEV, "No such device"},
        {R"({"name": "Fake0"})", jsonrpc::kInvalidParams, "at least one of"},
        {R"({"name": "Fake0", "rw_ios_per_sec": 1500})", jsonrpc::kInvalidParams,
         "'rw_ios_per_sec': must be a multiple of 1000"},
        {R"({"name": "Fake0", "rw_ios_per_sec": 999})", jsonrpc::kInvalidParams,
         "'rw_ios_per_sec'"},
        {R"({"name": "Fake0", "rw_ios_per_sec": -1000})", jsonrpc::kInvalidParams,
         "'rw_ios_per_sec'"},
        {R"({"name": "Fake0", "r_mbytes_per_sec": "10"})", jsonrpc::kInvalidParams,
         "'r_mbytes_per_sec'"},
        {R"({"name": "Fake0", "w_mbytes_per_sec": 1.5})", jsonrpc::kInvalidParams,
         "'w_mbytes_per_sec'"},
        {R"({"name": "Fake0", "rw_mbytes_per_sec": 99999999999999})", jsonrpc::kInvalidParams,
         "'rw_mbytes_per_sec'"},
        {R"({"name": "Fake0", "rw_ios_per_sec": 1000, "bogus": 1})", jsonrpc::kInvalidParams,
         "'bogus'"},
    };
    for (const Case &c : cases) {
        Json::Value params;
        ASSERT_TRUE(Json::Reader().parse(c.params, params));
        Json::Value resp = rpc("bdev_set_qos_limit", params);
        ASSERT_TRUE(resp.isMember("error")) << c.params;
        EXPECT_EQ(c.code, resp["error"]["code"].asInt()) << c.params;
        EXPECT_NE(std::string::npos, resp["error"]["message"].asString().find(c.message_part))
            << c.params << ": " << resp["error"]["message"].asString();
    }
    EXPECT_EQ(nullptr, b_.state->qos.get());  // nothing was set
}

TEST_F(BdevQosTest, LimitsAreReportedAndSaved) {
    Json::Value bdevs = rpc("bdev_get_bdevs", Json::Value())["result"];
    ASSERT_EQ(1u, bdevs.size());
    for (const char *k :
         {"rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec", "w_mbytes_per_sec"}) {
        EXPECT_EQ(0u, bdevs[0]["assigned_rate_limits"][k].asUInt64()) << k;
    }
    const event::Subsystem *sub = event::subsystems().find("bdev");
    ASSERT_NE(nullptr, sub);
    Json::Value config(Json::arrayValue);
    sub->write_config(config);
    for (const Json::Value &e : config) {
        EXPECT_NE("bdev_set_qos_limit", e["method"].asString());
    }

    set_qos(limits("rw_ios_per_sec", 20000, "r_mbytes_per_sec", 5));
    bdevs = rpc("bdev_get_bdevs", Json::Value())["result"];
    const Json::Value &lim = bdevs[0]["assigned_rate_limits"];
    EXPECT_EQ(20000u, lim["rw_ios_per_sec"].asUInt64());
    EXPECT_EQ(0u, lim["rw_mbytes_per_sec"].asUInt64());
    EXPECT_EQ(5u, lim["r_mbytes_per_sec"].asUInt64());
    EXPECT_EQ(0u, lim["w_mbytes_per_sec"].asUInt64());

    config = Json::Value(Json::arrayValue);
    sub->write_config(config);
    int create = -1, qos = -1;
    for (Json::ArrayIndex i = 0; i < config.size(); ++i) {
        if (config[i]["method"] == "fake_create") {
            create = static_cast<int>(i);
        } else if (config[i]["method"] == "bdev_set_qos_limit") {
            qos = static_cast<int>(i);
        }
    }
    ASSERT_GE(create, 0);
    EXPECT_EQ(create + 1, qos) << jsonrpc::to_string(config);
    Json::Value want;
    ASSERT_TRUE(Json::Reader().parse(
        R"({"name": "Fake0", "rw_ios_per_sec": 20000, "r_mbytes_per_sec": 5})", want));
    EXPECT_EQ(jsonrpc::to_string(want), jsonrpc::to_string(config[qos]["params"]));

    // Replaying the saved entry onto a bdev without limits restores them.
    set_qos(limits("rw_ios_per_sec", 0, "r_mbytes_per_sec", 0));
    EXPECT_EQ(nullptr, b_.state->qos.get());
    Json::Value resp = rpc("bdev_set_qos_limit", config[qos]["params"]);
    ASSERT_TRUE(resp.isMember("result")) << jsonrpc::to_string(resp);
    bdevs = rpc("bdev_get_bdevs", Json::Value())["result"];
    EXPECT_EQ(20000u, bdevs[0]["assigned_rate_limits"]["rw_ios_per_sec"].asUInt64());
    EXPECT_EQ(5u, bdevs[0]["assigned_rate_limits"]["r_mbytes_per_sec"].asUInt64());
}

}  // namespace
