// The bdev core against a fake module that holds I/O until the test completes it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <deque>
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
using test::FakeOps;
using test::on_done;
using test::Result;

namespace {

FLINT_TEST_EAL_ENV("bdev_test");

class BdevTest : public ::testing::Test {
protected:
    void SetUp() override {
        thread::lib_init({});
        t_ = thread::create("bdev_test");
        thread::set_current(t_);
        saved_options_ = bdev::options();
        // Small pools, so the tests can exhaust them.
        thread::IobufOptions io_opts;
        io_opts.small_pool_count = 64;
        io_opts.large_pool_count = 64;
        ASSERT_EQ(0, thread::iobuf_set_options(io_opts, nullptr));
        ASSERT_EQ(0, thread::iobuf_initialize());
        ASSERT_EQ(0, bdev::layer_init());
        thread::io_device_register(&ops_, nullptr, nullptr, 0, "fake");
        ops_.data.assign(64 * 512, 0);
        b_.name = "Fake0";
        b_.aliases = {"fake_alias"};
        b_.product_name = "Fake disk";
        b_.block_size = 512;
        b_.num_blocks = 64;
        b_.module = &test::g_fake_module;
        b_.ops = &ops_;
        ASSERT_EQ(0, bdev::register_bdev(&b_));
    }
    void TearDown() override {
        if (!removed_) {
            remove();
        }
        bool unreg = false;
        thread::io_device_unregister(&ops_, [&] { unreg = true; });
        pump();
        EXPECT_TRUE(unreg);
        bool layer_done = false;
        bdev::layer_fini([&] { layer_done = true; });
        pump();
        EXPECT_TRUE(layer_done);
        thread::iobuf_finish();
        bdev::options() = saved_options_;
        test::exit_threads({t_});
        EXPECT_TRUE(thread::lib_fini());
    }
    void remove() {
        int rc = -1;
        ASSERT_EQ(0, bdev::unregister_bdev(&b_, [&](int r) { rc = r; }));
        pump();
        EXPECT_EQ(0, rc);
        EXPECT_TRUE(ops_.destructed);
        removed_ = true;
    }
    // Runs this thread's messages and pollers for a while, as its reactor would.
    void pump(int rounds = 50) { test::poll_threads({t_}, t_, rounds); }
    // Pumps until pred holds (timed pollers need real time to pass), at most 10 s.
    template <class P>
    bool pump_until(P pred) {
        return test::step_until([&] { pump(1); }, pred);
    }
    void drain() {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        pump();
    }
    // Recreates the bdev_io pool with these sizes; call with no channel open.
    void resize_pool(uint32_t pool, uint32_t cache) {
        bool done = false;
        bdev::layer_fini([&] { done = true; });
        pump();
        ASSERT_TRUE(done);
        bdev::options().bdev_io_pool_size = pool;
        bdev::options().bdev_io_cache_size = cache;
        ASSERT_EQ(0, bdev::layer_init());
    }
    thread::Thread *t_;
    bdev::Options saved_options_;
    FakeOps ops_;
    bdev::Bdev b_;
    bool removed_ = false;
};

TEST_F(BdevTest, RegisterRejectsBadGeometryAndDuplicates) {
    FakeOps ops;
    bdev::Bdev b;
    b.module = &test::g_fake_module;
    b.ops = &ops;
    b.num_blocks = 8;
    b.name = "";
    EXPECT_EQ(-EINVAL, bdev::register_bdev(&b));
    b.name = "Other";
    b.block_size = 1000;
    EXPECT_EQ(-EINVAL, bdev::register_bdev(&b));
    b.block_size = 256;
    EXPECT_EQ(-EINVAL, bdev::register_bdev(&b));
    b.block_size = 512;
    b.num_blocks = 0;
    EXPECT_EQ(-EINVAL, bdev::register_bdev(&b));
    b.num_blocks = 8;
    b.required_alignment = 24;  // not a power of two
    EXPECT_EQ(-EINVAL, bdev::register_bdev(&b));
    b.required_alignment = 8192;  // beyond what a bounce buffer is aligned to
    EXPECT_EQ(-EINVAL, bdev::register_bdev(&b));
    b.required_alignment = 0;
    b.uuid = "not-a-uuid";
    EXPECT_EQ(-EINVAL, bdev::register_bdev(&b));
    b.uuid = b_.uuid;
    EXPECT_EQ(-EEXIST, bdev::register_bdev(&b));  // uuid taken
    b.uuid.clear();
    b.name = "Fake0";
    EXPECT_EQ(-EEXIST, bdev::register_bdev(&b));
    b.name = "fake_alias";
    EXPECT_EQ(-EEXIST, bdev::register_bdev(&b));
    EXPECT_EQ(36u, b_.uuid.size());  // generated
    std::string upper = b_.uuid;
    for (char &c : upper) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    b.name = "Other";
    b.uuid = upper;  // the same uuid in capitals is the same uuid
    EXPECT_EQ(-EEXIST, bdev::register_bdev(&b));
    EXPECT_EQ(&b_, bdev::get_bdev("fake_alias"));
}

TEST_F(BdevTest, WriteThenReadBackThroughIovecs) {
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    ASSERT_NE(nullptr, ch);
    std::vector<uint8_t> a(700, 0xab), b(324, 0xcd), out(1024, 0);
    iovec wv[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
    Result w, r;
    ASSERT_EQ(0, bdev::writev(d, ch, wv, 2, 4, 2, on_done, &w));
    EXPECT_EQ(0, w.done);  // never completes inside submit
    drain();
    EXPECT_EQ(1, w.ok);
    ASSERT_EQ(0, bdev::read(d, ch, out.data(), 4, 2, on_done, &r));
    drain();
    EXPECT_EQ(1, r.ok);
    EXPECT_EQ(0, std::memcmp(out.data(), a.data(), 700));
    EXPECT_EQ(0, std::memcmp(out.data() + 700, b.data(), 324));
    {
        bdev::IoStats st;
        bool got = false;
        bdev::get_iostat(&b_, [&](const bdev::IoStats &s) {
            st = s;
            got = true;
        });
        pump();
        ASSERT_TRUE(got);
        EXPECT_EQ(1u, st.num_read_ops);
        EXPECT_EQ(1024u, st.bytes_read);
        EXPECT_EQ(1u, st.num_write_ops);
        EXPECT_EQ(1024u, st.bytes_written);
        std::vector<bdev::ChannelStats> chans;
        bdev::get_channel_iostats(&b_, [&](const auto &c) { chans = c; });
        pump();
        ASSERT_EQ(1u, chans.size());
        EXPECT_EQ(t_->id(), chans[0].thread_id);
        EXPECT_EQ("bdev_test", chans[0].thread_name);
        EXPECT_EQ(1u, chans[0].stats.num_read_ops);
    }
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, SubmitErrors) {
    bdev::Desc *ro, *rw;
    ASSERT_EQ(0, bdev::open("Fake0", false, nullptr, &ro));
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &rw));
    auto *ch = bdev::get_io_channel(rw);
    std::vector<uint8_t> buf(4096);
    Result r;
    EXPECT_EQ(-EBADF, bdev::write(ro, ch, buf.data(), 0, 1, on_done, &r));
    EXPECT_EQ(-EINVAL, bdev::read(rw, ch, buf.data(), 63, 2, on_done, &r));  // past the end
    EXPECT_EQ(-EINVAL, bdev::read(rw, ch, buf.data(), 0, 0, on_done, &r));
    EXPECT_EQ(-EINVAL, bdev::read(rw, ch, buf.data(), UINT64_MAX, 2, on_done, &r));
    iovec short_iov{buf.data(), 100};
    EXPECT_EQ(-EINVAL, bdev::readv(rw, ch, &short_iov, 1, 0, 1, on_done, &r));
    EXPECT_EQ(-ENOTSUP, bdev::unmap(rw, ch, 0, 1, on_done, &r));
    EXPECT_EQ(-ENOTSUP, bdev::comparev(rw, ch, &short_iov, 1, 0, 1, on_done, &r));
    // A null base asks the layer for a buffer: only a read of one iovec may, so an empty
    // null iovec beside a real one is refused rather than taken as that request.
    iovec with_null[2] = {{nullptr, 0}, {buf.data(), 512}};
    EXPECT_EQ(-EINVAL, bdev::writev(rw, ch, with_null, 2, 0, 1, on_done, &r));
    EXPECT_EQ(-EINVAL, bdev::readv(rw, ch, with_null, 2, 0, 1, on_done, &r));
    EXPECT_EQ(-EINVAL, bdev::write(rw, ch, nullptr, 0, 1, on_done, &r));
    iovec null_short{nullptr, 100};
    EXPECT_EQ(-EINVAL, bdev::readv(rw, ch, &null_short, 1, 0, 1, on_done, &r));
    EXPECT_EQ(0, r.done);
    EXPECT_TRUE(ops_.submitted.empty());
    thread::put_io_channel(ch);
    bdev::close(ro);
    bdev::close(rw);
    EXPECT_EQ(-ENODEV, bdev::open("nope", false, nullptr, &ro));
    pump();
}

TEST_F(BdevTest, PoolExhaustionIsNoMemoryThenRecovers) {
    resize_pool(4, 4);
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", false, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> buf(512);
    Result r;
    for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    }
    EXPECT_EQ(-ENOMEM, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    ops_.complete_one();
    EXPECT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    drain();
    EXPECT_EQ(5, r.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, IoWaitRunsWhenABdevIoIsFreed) {
    resize_pool(2, 2);
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", false, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> buf(512);
    Result r;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    drain();  // its bdev_io now waits in this thread's cache
    bdev::IoWaitEntry early;
    early.cb = [](void *) {};
    EXPECT_EQ(-EINVAL, bdev::queue_io_wait(ch, &early));  // a bdev_io is still free
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    ASSERT_EQ(-ENOMEM, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    struct Waiter {
        bdev::IoWaitEntry entry;
        bdev::Desc *d;
        thread::IoChannel *ch;
        uint8_t *buf;
        Result *r;
        int order;
        std::vector<int> *log;
    };
    std::vector<int> log;
    Waiter w1{{}, d, ch, buf.data(), &r, 1, &log};
    Waiter w2{{}, d, ch, buf.data(), &r, 2, &log};
    for (Waiter *w : {&w1, &w2}) {
        w->entry.cb = [](void *arg) {
            auto *w = static_cast<Waiter *>(arg);
            w->log->push_back(w->order);
            EXPECT_EQ(0, bdev::read(w->d, w->ch, w->buf, 0, 1, on_done, w->r));
        };
        w->entry.cb_arg = w;
        ASSERT_EQ(0, bdev::queue_io_wait(ch, &w->entry));
    }
    ops_.complete_one();  // frees one bdev_io: the first waiter resubmits
    EXPECT_EQ((std::vector<int>{1}), log);
    ops_.complete_one();
    EXPECT_EQ((std::vector<int>{1, 2}), log);
    drain();
    EXPECT_EQ(5, r.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, WriteZeroesIsEmulatedWithWrites) {
    std::fill(ops_.data.begin(), ops_.data.end(), 0x5a);
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    Result r;
    ASSERT_EQ(0, bdev::write_zeroes(d, ch, 8, 16, on_done, &r));
    ASSERT_EQ(1u, ops_.pending.size());
    EXPECT_EQ(IoType::Write, ops_.pending.front()->type);
    drain();
    ASSERT_EQ(1, r.ok);
    for (size_t i = 0; i < ops_.data.size(); ++i) {
        ASSERT_EQ(i >= 8 * 512 && i < 24 * 512 ? 0 : 0x5a, ops_.data[i]) << i;
    }
    b_.max_transfer_blocks = 5;  // emulated chunks keep to the transfer limit
    ASSERT_EQ(0, bdev::write_zeroes(d, ch, 30, 12, on_done, &r));
    std::vector<uint64_t> sizes;
    while (!ops_.pending.empty()) {
        sizes.push_back(ops_.pending.front()->num_blocks);
        ops_.complete_one();
        pump();
    }
    EXPECT_EQ((std::vector<uint64_t>{5, 5, 2}), sizes);
    EXPECT_EQ(2, r.ok);
    b_.max_transfer_blocks = 0;
    ops_.write_zeroes = true;  // native path when the module has it
    ASSERT_EQ(0, bdev::write_zeroes(d, ch, 0, 1, on_done, &r));
    EXPECT_EQ(IoType::WriteZeroes, ops_.pending.front()->type);
    drain();
    EXPECT_EQ(3, r.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, SplitsOnTheOptimalIoBoundary) {
    b_.optimal_io_boundary = 8;
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> src(16 * 512);
    for (size_t i = 0; i < src.size(); ++i) {
        src[i] = static_cast<uint8_t>(i * 7 + 1);
    }
    // Three iovecs with cuts that do not fall on block or boundary edges.
    iovec wv[3] = {{src.data(), 1000}, {src.data() + 1000, 3000}, {src.data() + 4000, 4192}};
    Result w;
    ASSERT_EQ(0, bdev::writev(d, ch, wv, 3, 4, 16, on_done, &w));
    std::vector<std::pair<uint64_t, uint64_t>> chunks;
    while (!ops_.pending.empty()) {
        chunks.emplace_back(ops_.pending.front()->offset_blocks, ops_.pending.front()->num_blocks);
        ops_.complete_one();
        pump();
    }
    EXPECT_EQ((std::vector<std::pair<uint64_t, uint64_t>>{{4, 4}, {8, 8}, {16, 4}}), chunks);
    ASSERT_EQ(1, w.done);
    EXPECT_EQ(1, w.ok);
    EXPECT_EQ(0, std::memcmp(ops_.data.data() + 4 * 512, src.data(), src.size()));

    // Many small iovecs: a chunk runs out of iovec slots and sends whole blocks only.
    std::vector<uint8_t> out(16 * 512, 0);
    std::vector<iovec> rv;
    for (size_t off = 0; off < out.size(); off += 96) {
        rv.push_back({out.data() + off, std::min<size_t>(96, out.size() - off)});
    }
    Result r;
    ASSERT_EQ(0, bdev::readv(d, ch, rv.data(), static_cast<int>(rv.size()), 4, 16, on_done, &r));
    int chunks_read = 0;
    while (!ops_.pending.empty()) {
        EXPECT_LE(ops_.pending.front()->iovcnt, 16);
        ops_.complete_one();
        pump();
        ++chunks_read;
    }
    EXPECT_GT(chunks_read, 3);
    ASSERT_EQ(1, r.ok);
    EXPECT_EQ(0, std::memcmp(out.data(), src.data(), src.size()));

    // Within one boundary: sent as is.
    Result one;
    ASSERT_EQ(0, bdev::read(d, ch, out.data(), 8, 8, on_done, &one));
    EXPECT_EQ(1u, ops_.pending.size());
    drain();
    EXPECT_EQ(1, one.ok);
    bdev::IoStats st;
    bdev::get_iostat(&b_, [&](const bdev::IoStats &s) { st = s; });
    pump();
    EXPECT_EQ(2u, st.num_read_ops);  // the caller's requests, not the chunks
    EXPECT_EQ(1u, st.num_write_ops);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, SplitsToMaxTransferSegmentsAndSegmentSize) {
    b_.max_transfer_blocks = 3;
    b_.max_num_segments = 2;
    b_.max_segment_size = 1024;
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> src(10 * 512);
    for (size_t i = 0; i < src.size(); ++i) {
        src[i] = static_cast<uint8_t>(i * 13 + 5);
    }
    iovec wv[3] = {{src.data(), 2048}, {src.data() + 2048, 512}, {src.data() + 2560, 2560}};
    Result w;
    ASSERT_EQ(0, bdev::writev(d, ch, wv, 3, 1, 10, on_done, &w));
    uint64_t total = 0;
    while (!ops_.pending.empty()) {
        BdevIo *io = ops_.pending.front();
        EXPECT_LE(io->num_blocks, 3u);
        EXPECT_LE(io->iovcnt, 2);
        for (int i = 0; i < io->iovcnt; ++i) {
            EXPECT_LE(io->iovs[i].iov_len, 1024u);
        }
        total += io->num_blocks;
        ops_.complete_one();
        pump();
    }
    EXPECT_EQ(10u, total);
    ASSERT_EQ(1, w.ok);
    EXPECT_EQ(0, std::memcmp(ops_.data.data() + 512, src.data(), src.size()));
    // A request that already fits goes through whole.
    Result small;
    ASSERT_EQ(0, bdev::write(d, ch, src.data(), 0, 2, on_done, &small));
    ASSERT_EQ(1u, ops_.pending.size());
    EXPECT_EQ(2u, ops_.pending.front()->num_blocks);
    drain();
    EXPECT_EQ(1, small.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, ResetWaitsForOutstandingAndAbortsNewIo) {
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> buf(512);
    Result inflight, during, reset;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &inflight));
    ASSERT_EQ(0, bdev::reset(d, ch, on_done, &reset));
    EXPECT_EQ(-EBUSY, bdev::reset(d, ch, on_done, &reset));
    pump();
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &during));
    pump();
    EXPECT_EQ(1, during.done);
    EXPECT_EQ(0, during.ok);
    EXPECT_EQ(bdev::nvme_status::kAbortedSqDeletion.sc, during.status.sc);
    EXPECT_EQ(0, reset.done);  // the read is still outstanding
    EXPECT_EQ(0, ops_.resets);
    ops_.complete_one();  // the read
    ASSERT_TRUE(pump_until([&] { return ops_.pending.size() == 1; }));
    EXPECT_EQ(IoType::Reset, ops_.pending.front()->type);
    drain();
    ASSERT_TRUE(pump_until([&] { return reset.done == 1; }));
    EXPECT_EQ(1, reset.ok);
    EXPECT_EQ(1, ops_.resets);
    Result after;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &after));
    drain();
    EXPECT_EQ(1, after.ok);  // thawed
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, HotRemoveWithIoInFlight) {
    bdev::Desc *d;
    int events = 0;
    ASSERT_EQ(0, bdev::open(
                     "Fake0", true,
                     [&](bdev::EventType t, bdev::Bdev *b) {
                         EXPECT_EQ(bdev::EventType::Remove, t);
                         EXPECT_EQ(&b_, b);
                         ++events;
                     },
                     &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> buf(512);
    Result inflight, after;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &inflight));
    int rc = -1;
    ASSERT_EQ(0, bdev::unregister_bdev(&b_, [&](int r) { rc = r; }));
    EXPECT_EQ(-ENODEV, bdev::unregister_bdev(&b_, nullptr));
    pump();
    EXPECT_EQ(1, events);
    EXPECT_EQ(nullptr, bdev::get_bdev("Fake0"));
    EXPECT_EQ(-ENODEV, bdev::read(d, ch, buf.data(), 0, 1, on_done, &after));
    drain();
    EXPECT_EQ(1, inflight.ok);  // what was in flight completes normally
    EXPECT_EQ(-1, rc);          // still open
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
    EXPECT_EQ(0, rc);
    EXPECT_TRUE(ops_.destructed);
    removed_ = true;
}

TEST_F(BdevTest, ClaimsAreExclusive) {
    bdev::Desc *a, *b, *ro;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &a));
    ASSERT_EQ(0, bdev::open("Fake0", false, nullptr, &ro));
    EXPECT_EQ(-EBADF, bdev::claim(ro, "x"));
    ASSERT_EQ(0, bdev::claim(a, "nvmf ns 1"));
    EXPECT_EQ("nvmf ns 1", bdev::claimed_by(&b_));
    EXPECT_EQ(-EPERM, bdev::open("Fake0", true, nullptr, &b));
    bdev::release_claim(a);
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &b));
    EXPECT_EQ(-EPERM, bdev::claim(a, "nvmf ns 1"));  // another writer is open
    bdev::close(b);
    ASSERT_EQ(0, bdev::claim(a, "nvmf ns 1"));
    bdev::close(a);  // closing releases the claim
    EXPECT_EQ("", bdev::claimed_by(&b_));
    bdev::close(ro);
    pump();
}

TEST_F(BdevTest, ResizeNotifiesAndShrinkIsRefusedWhileOpen) {
    bdev::Desc *d;
    int resizes = 0;
    ASSERT_EQ(
        0,
        bdev::open(
            "Fake0", false,
            [&](bdev::EventType t, bdev::Bdev *) { resizes += t == bdev::EventType::Resize; }, &d));
    ops_.data.resize(128 * 512);
    EXPECT_EQ(0, bdev::notify_resize(&b_, 128));
    pump();
    EXPECT_EQ(1, resizes);
    EXPECT_EQ(128u, b_.num_blocks);
    EXPECT_EQ(-EBUSY, bdev::notify_resize(&b_, 32));
    EXPECT_EQ(-EINVAL, bdev::notify_resize(&b_, 0));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> buf(512);
    Result r;
    EXPECT_EQ(0, bdev::read(d, ch, buf.data(), 100, 1, on_done, &r));  // the new range
    drain();
    EXPECT_EQ(1, r.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, CompareAndWriteWritesOnlyOnMatch) {
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> a(512, 0xaa), b(512, 0xbb), c(512, 0xcc), two(1024, 0);
    iovec av{a.data(), 512}, bv{b.data(), 512}, cv{c.data(), 512}, twov{two.data(), 1024};
    Result r;
    EXPECT_EQ(-ENOTSUP, bdev::comparev_and_writev(d, ch, &av, 1, &bv, 1, 2, 1, on_done, &r));
    ops_.compare = true;
    ASSERT_EQ(0, bdev::write(d, ch, a.data(), 2, 1, on_done, &r));
    drain();
    ASSERT_EQ(1, r.ok);
    // acwu is 1 block: two blocks is more than one atomic unit.
    EXPECT_EQ(-EINVAL, bdev::comparev_and_writev(d, ch, &twov, 1, &twov, 1, 2, 2, on_done, &r));
    EXPECT_EQ(-EINVAL, bdev::comparev_and_writev(d, ch, &twov, 1, &bv, 1, 2, 1, on_done, &r));

    Result ok;
    ASSERT_EQ(0, bdev::comparev_and_writev(d, ch, &av, 1, &bv, 1, 2, 1, on_done, &ok));
    ASSERT_TRUE(pump_until([&] {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        return ok.done == 1;
    }));
    EXPECT_EQ(1, ok.ok);
    EXPECT_EQ(0, std::memcmp(ops_.data.data() + 2 * 512, b.data(), 512));

    Result bad;  // the blocks hold b now, not a
    ASSERT_EQ(0, bdev::comparev_and_writev(d, ch, &av, 1, &cv, 1, 2, 1, on_done, &bad));
    ASSERT_TRUE(pump_until([&] {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        return bad.done == 1;
    }));
    EXPECT_EQ(0, bad.ok);
    EXPECT_EQ(2, bad.status.sct);
    EXPECT_EQ(0x85, bad.status.sc);  // compare failure
    EXPECT_EQ(0, std::memcmp(ops_.data.data() + 2 * 512, b.data(), 512));
    EXPECT_EQ(ops_.submitted.back().first, IoType::Compare);  // and no write after it
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

// The range lock: a compare-and-write waits for overlapping writes already at the module,
// and holds overlapping writes that come after it, from its own thread and from another,
// until it has written. Writes elsewhere are not held.
TEST_F(BdevTest, CompareAndWriteIsAtomicAgainstOtherWrites) {
    ops_.compare = true;
    thread::Thread *t2 = thread::create("bdev_test_2");
    auto pump_both = [&](int rounds = 50) {
        for (int i = 0; i < rounds; ++i) {
            thread::set_current(nullptr);
            t_->poll(64, util::ticks());
            t2->poll(64, util::ticks());
        }
        thread::set_current(t_);
    };
    bdev::Desc *d, *d2;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    thread::set_current(t2);
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d2));
    auto *ch2 = bdev::get_io_channel(d2);
    thread::set_current(t_);

    std::vector<uint8_t> zero(1024, 0), w1(1024, 1), cawv(512, 2), w2(512, 3), w3(512, 4),
        w4(512, 5);
    iovec cmp{zero.data(), 512}, wr{cawv.data(), 512};
    Result r1, rc, r2, r3, r4;
    ASSERT_EQ(0, bdev::write(d, ch, w1.data(), 2, 2, on_done, &r1));  // at the module
    pump_both();
    ASSERT_EQ(0, bdev::comparev_and_writev(d, ch, &cmp, 1, &wr, 1, 3, 1, on_done, &rc));
    pump_both();
    ASSERT_EQ(1u, ops_.pending.size());  // the lock waits for w1
    EXPECT_EQ(IoType::Write, ops_.pending.front()->type);
    ops_.complete_one();     // w1 done: blocks 2..3 hold 1s, so the compare will fail...
    ops_.data[3 * 512] = 0;  // ...unless block 3 is zero again: make it all zero
    std::memset(ops_.data.data() + 3 * 512, 0, 512);
    pump_both();
    ASSERT_EQ(1u, ops_.pending.size());
    EXPECT_EQ(IoType::Compare, ops_.pending.front()->type);

    ASSERT_EQ(0, bdev::write(d, ch, w2.data(), 3, 1, on_done, &r2));  // overlaps: held
    thread::set_current(t2);
    ASSERT_EQ(0, bdev::write(d2, ch2, w4.data(), 3, 1, on_done, &r4));  // other thread: held
    thread::set_current(t_);
    ASSERT_EQ(0, bdev::write(d, ch, w3.data(), 10, 1, on_done, &r3));  // elsewhere: not held
    pump_both();
    ASSERT_EQ(2u, ops_.pending.size());
    EXPECT_EQ(10u, ops_.pending.back()->offset_blocks);
    ops_.complete_one();  // the compare matches
    pump_both();
    ASSERT_EQ(2u, ops_.pending.size());  // w3 and the compare-and-write's write
    EXPECT_EQ(IoType::Write, ops_.pending.back()->type);
    EXPECT_EQ(3u, ops_.pending.back()->offset_blocks);
    EXPECT_EQ(0, r2.done + r4.done);
    while (!ops_.pending.empty()) {
        ops_.complete_one();
    }
    pump_both();
    EXPECT_EQ(1, rc.ok);
    EXPECT_EQ(1, r3.ok);
    EXPECT_EQ(2u, ops_.pending.size());  // w2 and w4 released after the unlock
    while (!ops_.pending.empty()) {
        ops_.complete_one();
    }
    pump_both();
    EXPECT_EQ(1, r2.ok);
    EXPECT_EQ(1, r4.ok);
    // The compare-and-write's data landed before either held write.
    size_t caw_write = 0, first_held = 0;
    for (size_t i = 0; i < ops_.submitted.size(); ++i) {
        const auto &[type, off] = ops_.submitted[i];
        if (type == IoType::Write && off == 3 && caw_write == 0) {
            caw_write = i;
        } else if (type == IoType::Write && off == 3 && first_held == 0) {
            first_held = i;
        }
    }
    EXPECT_LT(caw_write, first_held);

    thread::set_current(t2);
    thread::put_io_channel(ch2);
    bdev::close(d2);
    thread::set_current(t_);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump_both();
    t2->exit();
    while (!t2->exited()) {
        pump_both(1);
    }
    thread::Thread::destroy(t2);
}

TEST_F(BdevTest, AbortRecallsHeldAndModuleRequests) {
    bdev::Desc *ro, *d;
    ASSERT_EQ(0, bdev::open("Fake0", false, nullptr, &ro));
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> buf(512);
    Result a, b, ab;
    EXPECT_EQ(-EBADF, bdev::abort(ro, ch, &a, on_done, &ab));

    // At the module, which cannot abort: the abort fails, the read goes on.
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 1, 1, on_done, &a));
    ASSERT_EQ(0, bdev::abort(d, ch, &a, on_done, &ab));
    pump();
    EXPECT_EQ(1, ab.done);
    EXPECT_EQ(0, ab.ok);
    EXPECT_EQ(0, a.done);

    // The module can abort: only the matching request is recalled.
    ops_.abort = true;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 2, 1, on_done, &b));
    Result ab2;
    ASSERT_EQ(0, bdev::abort(d, ch, &a, on_done, &ab2));
    pump();
    EXPECT_EQ(1, ab2.ok);
    EXPECT_EQ(1, a.done);
    EXPECT_EQ(0, a.ok);
    EXPECT_EQ(0x07, a.status.sc);  // aborted by request
    EXPECT_EQ(0, b.done);

    // Nothing matches: the abort fails.
    Result ab3;
    ASSERT_EQ(0, bdev::abort(d, ch, &ab3, on_done, &ab3));
    pump();
    EXPECT_EQ(0, ab3.ok);
    drain();
    EXPECT_EQ(1, b.ok);

    // Held by a range lock: recalled by the layer itself.
    ops_.abort = false;
    ops_.compare = true;
    std::vector<uint8_t> zero(512, 0), cw(512, 9), w(512, 7);
    iovec cmp{zero.data(), 512}, wr{cw.data(), 512};
    Result c, held, ab4;
    ASSERT_EQ(0, bdev::comparev_and_writev(d, ch, &cmp, 1, &wr, 1, 5, 1, on_done, &c));
    pump();
    ASSERT_EQ(1u, ops_.pending.size());  // the compare
    ASSERT_EQ(0, bdev::write(d, ch, w.data(), 5, 1, on_done, &held));
    ASSERT_EQ(0, bdev::abort(d, ch, &held, on_done, &ab4));
    pump();
    EXPECT_EQ(1, ab4.ok);
    EXPECT_EQ(1, held.done);
    EXPECT_EQ(0x07, held.status.sc);
    ASSERT_TRUE(pump_until([&] {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        return c.done == 1;
    }));
    EXPECT_EQ(1, c.ok);
    EXPECT_EQ(0, std::memcmp(ops_.data.data() + 5 * 512, cw.data(), 512));  // not 7s
    thread::put_io_channel(ch);
    bdev::close(ro);
    bdev::close(d);
    pump();
}

// A read without a buffer gets one from iobuf; the callback sees the data in io->iovs.
struct BufRead {
    int done = 0;
    bool ok = false;
    std::vector<uint8_t> data;
};
void on_buf_read(BdevIo *io, bool ok, void *arg) {
    auto *r = static_cast<BufRead *>(arg);
    ++r->done;
    r->ok = ok;
    if (ok && io->iovcnt == 1 && io->iovs[0].iov_base != nullptr) {
        auto *p = static_cast<uint8_t *>(io->iovs[0].iov_base);
        r->data.assign(p, p + io->iovs[0].iov_len);
    }
    bdev::free_io(io);
}

TEST_F(BdevTest, ReadsWithoutABufferWaitForIobufAndResume) {
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    for (size_t i = 0; i < ops_.data.size(); ++i) {
        ops_.data[i] = static_cast<uint8_t>(i / 512);
    }
    Result r;
    EXPECT_EQ(-EINVAL, bdev::write(d, ch, nullptr, 0, 1, on_done, &r));  // writes need data
    iovec two[2] = {{nullptr, 512}, {nullptr, 512}};
    EXPECT_EQ(-EINVAL, bdev::readv(d, ch, two, 2, 0, 2, on_done, &r));

    // 64 small buffers in all: 80 reads of one block, 16 of which wait for a buffer.
    constexpr int kReads = 80;
    std::vector<BufRead> reads(kReads);
    for (int i = 0; i < kReads; ++i) {
        ASSERT_EQ(0, bdev::read(d, ch, nullptr, i % 64, 1, on_buf_read, &reads[i]));
    }
    pump();
    EXPECT_EQ(64u, ops_.pending.size());
    // The waiting ones can be aborted like any held request.
    Result ab;
    ASSERT_EQ(0, bdev::abort(d, ch, &reads[kReads - 1], on_done, &ab));
    pump();
    EXPECT_EQ(1, ab.ok);
    EXPECT_EQ(1, reads[kReads - 1].done);
    EXPECT_FALSE(reads[kReads - 1].ok);
    // Each completion frees a buffer for the next waiter.
    ASSERT_TRUE(pump_until([&] {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        int done = 0;
        for (const auto &x : reads) {
            done += x.done;
        }
        return done == kReads;
    }));
    for (int i = 0; i < kReads - 1; ++i) {
        ASSERT_TRUE(reads[i].ok) << i;
        ASSERT_EQ(512u, reads[i].data.size());
        EXPECT_EQ(static_cast<uint8_t>(i % 64), reads[i].data[0]) << i;
    }
    std::vector<thread::IobufModuleStats> stats;
    thread::iobuf_get_stats([&](const auto &s) { stats = s; });
    pump();
    auto it =
        std::find_if(stats.begin(), stats.end(), [](const auto &s) { return s.module == "bdev"; });
    ASSERT_NE(stats.end(), it);
    EXPECT_GE(it->small_pool.retry, 16u);
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

TEST_F(BdevTest, MisalignedBuffersAreBounced) {
    b_.required_alignment = 512;
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    std::vector<uint8_t> raw(4096 + 1);
    uint8_t *odd = raw.data() + 1;  // off any 512-byte boundary
    for (int i = 0; i < 1024; ++i) {
        odd[i] = static_cast<uint8_t>(i * 7);
    }
    iovec parts[3] = {{odd, 100}, {odd + 100, 900}, {odd + 1000, 24}};
    Result w, r;
    ASSERT_EQ(0, bdev::writev(d, ch, parts, 3, 8, 2, on_done, &w));
    drain();
    ASSERT_EQ(1, w.ok);
    EXPECT_EQ(0, std::memcmp(ops_.data.data() + 8 * 512, odd, 1024));
    std::vector<uint8_t> back_raw(1024 + 3, 0);
    iovec back{back_raw.data() + 3, 1024};
    ASSERT_EQ(0, bdev::readv(d, ch, &back, 1, 8, 2, on_done, &r));
    drain();
    ASSERT_EQ(1, r.ok);
    EXPECT_EQ(0, std::memcmp(back_raw.data() + 3, odd, 1024));
    EXPECT_EQ(0, ops_.misaligned_seen);
    // The caller's iovecs are as they were.
    EXPECT_EQ(odd + 100, parts[1].iov_base);
    EXPECT_EQ(back_raw.data() + 3, back.iov_base);
    // Aligned buffers go through untouched.
    alignas(512) static uint8_t aligned[512];
    Result a;
    ASSERT_EQ(0, bdev::read(d, ch, aligned, 8, 1, on_done, &a));
    ASSERT_EQ(1u, ops_.pending.size());
    EXPECT_EQ(aligned, ops_.pending.front()->iovs[0].iov_base);
    drain();
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

// A write waiting for a bounce buffer has passed the lock check: a compare-and-write on its
// blocks waits for it, as for a write at the module.
TEST_F(BdevTest, CompareAndWriteWaitsForAWriteWaitingForABuffer) {
    b_.required_alignment = 512;
    ops_.compare = true;
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", true, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    // Reads without a buffer take all 64 small buffers.
    std::vector<Result> reads(64);
    for (int i = 0; i < 64; ++i) {
        ASSERT_EQ(0, bdev::read(d, ch, nullptr, i, 1, on_done, &reads[i]));
    }
    pump();
    ASSERT_EQ(64u, ops_.pending.size());
    std::vector<uint8_t> raw(513, 0x11), cmp(512, 0), out(512, 0x22);
    iovec odd{raw.data() + 1, 512}, cv{cmp.data(), 512}, wv{out.data(), 512};
    Result w, caw;
    ASSERT_EQ(0, bdev::writev(d, ch, &odd, 1, 5, 1, on_done, &w));  // waits for a buffer
    ASSERT_EQ(0, bdev::comparev_and_writev(d, ch, &cv, 1, &wv, 1, 5, 1, on_done, &caw));
    pump();
    EXPECT_EQ(64u, ops_.pending.size());  // neither the write nor the compare is out
    ops_.complete_one();                  // a buffer comes back: the write goes
    ASSERT_TRUE(pump_until([&] { return ops_.pending.size() == 64; }));
    EXPECT_EQ(IoType::Write, ops_.pending.back()->type);
    for (BdevIo *io : ops_.pending) {
        EXPECT_NE(IoType::Compare, io->type);
    }
    ASSERT_TRUE(pump_until([&] {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        return w.done == 1 && caw.done == 1;
    }));
    EXPECT_EQ(1, w.ok);
    // The compare saw the write's 0x11, not the zeroes: the compare-and-write fails.
    EXPECT_EQ(0, caw.ok);
    EXPECT_EQ(0, std::memcmp(ops_.data.data() + 5 * 512, raw.data() + 1, 512));
    thread::put_io_channel(ch);
    bdev::close(d);
    pump();
}

}  // namespace
