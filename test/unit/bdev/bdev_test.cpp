// The bdev core against a fake module that holds I/O until the test completes it.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <deque>
#include <vector>

#include "../common/eal_env.h"
#include "flint/bdev/module.h"
#include "flint/env/env.h"
#include "flint/util/time.h"

using namespace flint;
using bdev::BdevIo;
using bdev::IoType;

namespace {

FLINT_TEST_EAL_ENV("bdev_test");

struct FakeModule : bdev::Module {
    const char *name() const override { return "fake"; }
};
FakeModule g_module;

// Memory-backed; I/O is held in `pending` until complete_all().
struct FakeOps : bdev::BdevOps {
    std::vector<uint8_t> data;
    uint32_t bs = 512;
    bool write_zeroes = false;
    std::deque<BdevIo *> pending;
    int resets = 0;
    bool destructed = false;

    void submit(thread::IoChannel *, BdevIo *io) override { pending.push_back(io); }
    bool supports(IoType t) const override {
        return t == IoType::Read || t == IoType::Write || t == IoType::Reset ||
               (t == IoType::WriteZeroes && write_zeroes);
    }
    void *io_device() override { return this; }
    void destruct(std::function<void()> done) override {
        destructed = true;
        done();
    }
    void complete_one() {
        BdevIo *io = pending.front();
        pending.pop_front();
        uint64_t off = io->offset_blocks * bs;
        if (io->type == IoType::Read || io->type == IoType::Write) {
            for (int i = 0; i < io->iovcnt; ++i) {
                auto *base = static_cast<uint8_t *>(io->iovs[i].iov_base);
                if (io->type == IoType::Read) {
                    std::memcpy(base, data.data() + off, io->iovs[i].iov_len);
                } else {
                    std::memcpy(data.data() + off, base, io->iovs[i].iov_len);
                }
                off += io->iovs[i].iov_len;
            }
        } else if (io->type == IoType::WriteZeroes) {
            std::memset(data.data() + off, 0, io_bytes(io));
        } else if (io->type == IoType::Reset) {
            ++resets;
        }
        bdev::io_complete(io, bdev::nvme_status::kSuccess);
    }
};

struct Result {
    int done = 0;
    int ok = 0;
    bdev::NvmeStatus status;
};

void on_done(BdevIo *io, bool ok, void *arg) {
    auto *r = static_cast<Result *>(arg);
    ++r->done;
    r->ok += ok ? 1 : 0;
    r->status = bdev::io_status(io);
    bdev::free_io(io);
}

class BdevTest : public ::testing::Test {
protected:
    void SetUp() override {
        thread::lib_init({});
        t_ = thread::create("bdev_test");
        thread::set_current(t_);
        thread::io_device_register(&ops_, nullptr, nullptr, 0, "fake");
        ops_.data.assign(64 * 512, 0);
        b_.name = "Fake0";
        b_.aliases = {"fake_alias"};
        b_.product_name = "Fake disk";
        b_.block_size = 512;
        b_.num_blocks = 64;
        b_.module = &g_module;
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
        t_->exit();
        thread::set_current(nullptr);
        while (!t_->exited()) {
            t_->poll(64, util::ticks());
        }
        thread::Thread::destroy(t_);
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
    void pump(int rounds = 50) {
        for (int i = 0; i < rounds; ++i) {
            thread::set_current(nullptr);
            t_->poll(64, util::ticks());
            thread::set_current(t_);
        }
    }
    // Pumps until pred holds (timed pollers need real time to pass), at most 10 s.
    template <class P>
    bool pump_until(P pred) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!pred()) {
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            pump(1);
        }
        return true;
    }
    void drain() {
        while (!ops_.pending.empty()) {
            ops_.complete_one();
        }
        pump();
    }
    thread::Thread *t_;
    FakeOps ops_;
    bdev::Bdev b_;
    bool removed_ = false;
};

TEST_F(BdevTest, RegisterRejectsBadGeometryAndDuplicates) {
    FakeOps ops;
    bdev::Bdev b;
    b.module = &g_module;
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
    EXPECT_EQ(0, r.done);
    thread::put_io_channel(ch);
    bdev::close(ro);
    bdev::close(rw);
    EXPECT_EQ(-ENODEV, bdev::open("nope", false, nullptr, &ro));
    pump();
}

TEST_F(BdevTest, PoolExhaustionIsNoMemoryThenRecovers) {
    bdev::options().bdev_io_cache_size = 4;
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", false, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    bdev::options().bdev_io_cache_size = 1024;
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
    bdev::options().bdev_io_cache_size = 2;
    bdev::Desc *d;
    ASSERT_EQ(0, bdev::open("Fake0", false, nullptr, &d));
    auto *ch = bdev::get_io_channel(d);
    bdev::options().bdev_io_cache_size = 256;
    std::vector<uint8_t> buf(512);
    Result r;
    ASSERT_EQ(0, bdev::read(d, ch, buf.data(), 0, 1, on_done, &r));
    bdev::IoWaitEntry early;
    early.cb = [](void *) {};
    EXPECT_EQ(-EINVAL, bdev::queue_io_wait(ch, &early));  // a bdev_io is still free
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
    EXPECT_EQ(4, r.ok);
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

}  // namespace
