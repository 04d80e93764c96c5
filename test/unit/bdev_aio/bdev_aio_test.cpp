// The aio bdev module on real files: data goes to and comes from the file, errors are
// refused with a message, and lifetime follows the bdev layer's events. Threads are polled
// by the test.
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../common/eal_env.h"
#include "../common/poll_threads.h"
#include "bdev_aio.h"
#include "flint/bdev/module.h"
#include "flint/env/env.h"
#include "flint/event/app.h"
#include "flint/util/time.h"
#include "spsc_ring.h"

using namespace flint;
using bdev::BdevIo;
using bdev::IoType;
namespace fs = std::filesystem;

namespace {

FLINT_TEST_EAL_ENV("bdev_aio_test");

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

struct FreeDeleter {
    void operator()(void *p) const { std::free(p); }
};
using Buf = std::unique_ptr<unsigned char[], FreeDeleter>;

Buf aligned_buf(size_t size, unsigned char fill = 0) {
    void *p = nullptr;
    if (posix_memalign(&p, 4096, size) != 0) {
        return nullptr;
    }
    std::memset(p, fill, size);
    return Buf(static_cast<unsigned char *>(p));
}

// A block of recognisable bytes: the block number and a seed in every byte pair.
void fill_pattern(unsigned char *p, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; ++i) {
        p[i] = static_cast<unsigned char>((i * 7 + seed * 31 + (i >> 9)) & 0xff);
    }
}

bool all_zero(const unsigned char *p, size_t len) {
    for (size_t i = 0; i < len; ++i) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

// The file's bytes [off, off + len), read past the bdev.
std::vector<unsigned char> file_bytes(const std::string &file, off_t off, size_t len) {
    std::vector<unsigned char> v(len);
    int fd = ::open(file.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0) << file;
    EXPECT_EQ(static_cast<ssize_t>(len), pread(fd, v.data(), len, off));
    ::close(fd);
    return v;
}

// Fills blocks [0, blocks) of file with fill_pattern(seed = block number), past the bdev.
void write_blocks(const std::string &file, uint32_t bs, uint32_t blocks) {
    int fd = ::open(file.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << file;
    std::vector<unsigned char> b(bs);
    for (uint32_t i = 0; i < blocks; ++i) {
        fill_pattern(b.data(), bs, i);
        ASSERT_EQ(static_cast<ssize_t>(bs), pwrite(fd, b.data(), bs, static_cast<off_t>(i) * bs));
    }
    ::close(fd);
}

bool block_has_pattern(const std::string &file, uint32_t bs, uint32_t block) {
    std::vector<unsigned char> want(bs);
    fill_pattern(want.data(), bs, block);
    return file_bytes(file, static_cast<off_t>(block) * bs, bs) == want;
}

bool block_is_zero(const std::string &file, uint32_t bs, uint32_t block) {
    std::vector<unsigned char> got = file_bytes(file, static_cast<off_t>(block) * bs, bs);
    return all_zero(got.data(), got.size());
}

// Records the order in which I/Os complete.
struct Ordered {
    std::vector<int> *order;
    int index;
    bool ok = false;
};

void on_ordered(BdevIo *io, bool ok, void *arg) {
    auto *o = static_cast<Ordered *>(arg);
    o->ok = ok;
    o->order->push_back(o->index);
    bdev::free_io(io);
}

// A non-aio bdev, to check that aio RPCs refuse it.
struct OtherModule : bdev::Module {
    const char *name() const override { return "other"; }
};
OtherModule g_other_module;
struct OtherOps : bdev::BdevOps {
    void submit(thread::IoChannel *, BdevIo *io) override {
        bdev::io_complete(io, bdev::nvme_status::kSuccess);
    }
    bool supports(IoType) const override { return false; }
    void *io_device() override { return this; }
    void destruct(std::function<void()> done) override { done(); }
};

class AioTest : public ::testing::Test {
protected:
    void SetUp() override {
        thread::lib_init({});
        t0_ = thread::create("t0");
        t1_ = thread::create("t1");
        thread::set_current(t0_);
        ASSERT_EQ(0, bdev::layer_init());
        bdev_aio::register_module();
        bdev_aio::register_module();  // idempotent
        event::rpc_registry().set_state(jsonrpc::kRuntime);
        dir_ = make_dir(std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp");
        ASSERT_FALSE(dir_.empty());
    }
    void TearDown() override {
        for (bdev::Bdev *b : bdev::bdevs()) {
            if (b->module == &g_other_module) {
                continue;
            }
            int rc = -1;
            bdev_aio::destroy(b->name, [&](int r, const std::string &) { rc = r; });
            EXPECT_TRUE(pump_until([&] { return rc != -1; }));
            EXPECT_EQ(0, rc) << b->name;
        }
        EXPECT_TRUE(bdev::bdevs().empty() || bdev::bdevs()[0]->module == &g_other_module);
        bdev_aio::testing::set_fail_direct_open(false);
        bdev_aio::testing::set_use_completion_ring(true);
        bdev_aio::testing::set_use_fdsync(true);
        bdev_aio::testing::hold_workers(false);
        bool layer_done = false;
        bdev::layer_fini([&] { layer_done = true; });
        EXPECT_TRUE(pump_until([&] { return layer_done; }));
        test::exit_threads({t0_, t1_});
        EXPECT_TRUE(thread::lib_fini());
        for (const auto &d : dirs_) {
            std::error_code ec;
            fs::remove_all(d, ec);
        }
    }

    std::string make_dir(const std::string &parent) {
        std::string tmpl = parent + "/bdev_aio_test.XXXXXX";
        if (mkdtemp(tmpl.data()) == nullptr) {
            return "";
        }
        dirs_.push_back(tmpl);
        return tmpl;
    }
    static std::string make_file(const std::string &dir, const std::string &name, off_t size) {
        std::string path = dir + "/" + name;
        int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
        EXPECT_GE(fd, 0) << path << ": " << std::strerror(errno);
        EXPECT_EQ(0, ftruncate(fd, size));
        ::close(fd);
        return path;
    }

    // Runs both threads' messages and pollers for a while, as their reactors would; the
    // test goes on as t0.
    void pump(int rounds = 20) { test::poll_threads({t0_, t1_}, t0_, rounds); }
    // Pumps until pred holds (the kernel and timed pollers need real time), at most 10 s.
    template <class P>
    bool pump_until(P pred) {
        return test::step_until([&] { pump(1); }, pred);
    }
    // Runs fn as t1.
    template <class F>
    void on_t1(F fn) {
        thread::set_current(t1_);
        fn();
        thread::set_current(t0_);
    }

    Json::Value rpc(const std::string &method, const Json::Value &params) {
        auto resp = std::make_shared<Json::Value>();
        auto got = std::make_shared<bool>(false);
        auto req = std::make_shared<jsonrpc::Request>(method, params, Json::Value(1),
                                                      [resp, got](const Json::Value &r) {
                                                          *resp = r;
                                                          *got = true;
                                                      });
        event::rpc_registry().dispatch(req);
        req.reset();
        EXPECT_TRUE(pump_until([&] { return *got; })) << method << " did not answer";
        return *resp;
    }
    Json::Value create(const std::string &name, const std::string &file, uint32_t bs = 0) {
        Json::Value p;
        p["name"] = name;
        p["filename"] = file;
        if (bs != 0) {
            p["block_size"] = bs;
        }
        return rpc("bdev_aio_create", p);
    }
    Json::Value named(const std::string &method, const std::string &name) {
        Json::Value p;
        p["name"] = name;
        return rpc(method, p);
    }

    // Opens name for write on t0, recording events.
    bdev::Desc *open(const std::string &name) {
        bdev::Desc *d = nullptr;
        EXPECT_EQ(0, bdev::open(
                         name, true,
                         [this](bdev::EventType t, bdev::Bdev *) { events_.push_back(t); }, &d));
        return d;
    }
    // Waits for one I/O started by submit(cb, arg); returns its result.
    template <class F>
    Result run(F submit) {
        Result r;
        int rc = submit(on_done, &r);
        EXPECT_EQ(0, rc);
        if (rc == 0) {
            EXPECT_TRUE(pump_until([&] { return r.done == 1; }));
        }
        return r;
    }

    thread::Thread *t0_ = nullptr;
    thread::Thread *t1_ = nullptr;
    std::string dir_;
    std::vector<std::string> dirs_;
    std::vector<bdev::EventType> events_;
};

// ---- Data through the bdev and the file, on each kind of file system at hand ----

class AioDataTest : public AioTest, public ::testing::WithParamInterface<const char *> {};

TEST_P(AioDataTest, DataReachesTheFileAndComesBack) {
    std::string parent = GetParam();
    if (std::string(parent) == "TMPDIR") {
        parent = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
    }
    std::string dir = make_dir(parent);
    if (dir.empty()) {
        GTEST_SKIP() << parent << " is not writable here";
    }
    const off_t kSize = 1 << 20;
    std::string file = make_file(dir, "disk", kSize);
    Json::Value r = create("aio0", file);
    ASSERT_EQ("aio0", r["result"].asString()) << r;
    bdev::Bdev *b = bdev::get_bdev("aio0");
    ASSERT_NE(nullptr, b);
    EXPECT_EQ("AIO disk", b->product_name);
    const uint32_t bs = b->block_size;
    EXPECT_TRUE(bs == 512 || bs == 1024 || bs == 2048 || bs == 4096) << bs;
    if (!bdev_aio::testing::uses_direct_io("aio0")) {
        EXPECT_EQ(512u, bs);  // buffered I/O has no alignment to honour
    }
    EXPECT_EQ(static_cast<uint64_t>(kSize) / bs, b->num_blocks);
    EXPECT_TRUE(bdev_aio::testing::channel_uses_ring("aio0"));

    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);
    ASSERT_NE(nullptr, ch);
    int fd = ::open(file.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);

    // Written through the bdev: in the file.
    Buf w = aligned_buf(2 * bs);
    fill_pattern(w.get(), 2 * bs, 1);
    Result res =
        run([&](auto cb, void *arg) { return bdev::write(d, ch, w.get(), 2, 2, cb, arg); });
    EXPECT_EQ(1, res.ok);
    std::vector<unsigned char> got(2 * bs);
    ASSERT_EQ(static_cast<ssize_t>(2 * bs), pread(fd, got.data(), 2 * bs, 2 * bs));
    EXPECT_EQ(0, std::memcmp(got.data(), w.get(), 2 * bs));

    // Written into the file: read through the bdev.
    std::vector<unsigned char> src(bs);
    fill_pattern(src.data(), bs, 2);
    ASSERT_EQ(static_cast<ssize_t>(bs), pwrite(fd, src.data(), bs, 5 * bs));
    Buf rd = aligned_buf(bs, 0xee);
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, rd.get(), 5, 1, cb, arg); });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(0, std::memcmp(rd.get(), src.data(), bs));

    // Several iovecs each way, split differently.
    Buf a = aligned_buf(bs), bb = aligned_buf(2 * bs), c = aligned_buf(bs);
    fill_pattern(a.get(), bs, 3);
    fill_pattern(bb.get(), 2 * bs, 4);
    fill_pattern(c.get(), bs, 5);
    iovec wv[3] = {{a.get(), bs}, {bb.get(), 2 * bs}, {c.get(), bs}};
    res = run([&](auto cb, void *arg) { return bdev::writev(d, ch, wv, 3, 10, 4, cb, arg); });
    EXPECT_EQ(1, res.ok);
    Buf r1 = aligned_buf(3 * bs), r2 = aligned_buf(bs);
    iovec rv[2] = {{r1.get(), 3 * bs}, {r2.get(), bs}};
    res = run([&](auto cb, void *arg) { return bdev::readv(d, ch, rv, 2, 10, 4, cb, arg); });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(0, std::memcmp(r1.get(), a.get(), bs));
    EXPECT_EQ(0, std::memcmp(r1.get() + bs, bb.get(), 2 * bs));
    EXPECT_EQ(0, std::memcmp(r2.get(), c.get(), bs));
    std::vector<unsigned char> file4(4 * bs);
    ASSERT_EQ(static_cast<ssize_t>(4 * bs), pread(fd, file4.data(), 4 * bs, 10 * bs));
    EXPECT_EQ(0, std::memcmp(file4.data() + 3 * bs, c.get(), bs));

    // Flush.
    res = run([&](auto cb, void *arg) { return bdev::flush(d, ch, 0, b->num_blocks, cb, arg); });
    EXPECT_EQ(1, res.ok);

    // Unmap reads back zeroes and leaves a hole; native write zeroes too.
    ASSERT_EQ(b->ops->supports(IoType::Unmap), b->ops->supports(IoType::WriteZeroes));
    if (b->ops->supports(IoType::Unmap)) {
        ASSERT_EQ(0, std::memcmp(file_bytes(file, 2 * bs, 2 * bs).data(), w.get(), 2 * bs));
        res = run([&](auto cb, void *arg) { return bdev::unmap(d, ch, 2, 2, cb, arg); });
        EXPECT_EQ(1, res.ok);
        std::vector<unsigned char> in_file = file_bytes(file, 2 * bs, 2 * bs);
        EXPECT_TRUE(all_zero(in_file.data(), in_file.size()));
        Buf z = aligned_buf(2 * bs, 0xee);
        res = run([&](auto cb, void *arg) { return bdev::read(d, ch, z.get(), 2, 2, cb, arg); });
        EXPECT_EQ(1, res.ok);
        EXPECT_TRUE(all_zero(z.get(), 2 * bs));

        res = run([&](auto cb, void *arg) { return bdev::write_zeroes(d, ch, 10, 4, cb, arg); });
        EXPECT_EQ(1, res.ok);
        ASSERT_EQ(static_cast<ssize_t>(4 * bs), pread(fd, file4.data(), 4 * bs, 10 * bs));
        EXPECT_TRUE(all_zero(file4.data(), 4 * bs));
    }

    ::close(fd);
    thread::put_io_channel(ch);
    bdev::close(d);
}

INSTANTIATE_TEST_SUITE_P(FileSystems, AioDataTest,
                         ::testing::Values("TMPDIR", "/var/tmp", "/dev/shm"), [](const auto &info) {
                             std::string s = info.param;
                             return s == "TMPDIR"     ? std::string("tmpdir")
                                    : s == "/var/tmp" ? std::string("var_tmp")
                                                      : std::string("dev_shm");
                         });

// ---- Open modes and completion reaping ----

TEST_F(AioTest, FallsBackToBufferedIoWhenODirectIsRefused) {
    std::string file = make_file(dir_, "nodirect", 64 * 1024);
    bdev_aio::testing::set_fail_direct_open(true);
    ::testing::internal::CaptureStderr();
    Json::Value r = create("aio0", file);
    std::string log = ::testing::internal::GetCapturedStderr();
    ASSERT_EQ("aio0", r["result"].asString()) << r;
    EXPECT_NE(std::string::npos,
              log.find("'" + file + "' does not support O_DIRECT; using buffered I/O"))
        << log;
    EXPECT_FALSE(bdev_aio::testing::uses_direct_io("aio0"));
    bdev::Bdev *b = bdev::get_bdev("aio0");
    ASSERT_NE(nullptr, b);
    EXPECT_EQ(512u, b->block_size);
    EXPECT_EQ(128u, b->num_blocks);

    // A block size below the file system's is fine without O_DIRECT.
    bdev_aio::testing::set_fail_direct_open(false);
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);
    std::vector<unsigned char> w(512 * 3);  // plain heap memory: no alignment needed
    fill_pattern(w.data(), w.size(), 9);
    Result res =
        run([&](auto cb, void *arg) { return bdev::write(d, ch, w.data(), 7, 3, cb, arg); });
    EXPECT_EQ(1, res.ok);
    std::vector<unsigned char> rd(512 * 3);
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, rd.data(), 7, 3, cb, arg); });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(w, rd);
    res = run([&](auto cb, void *arg) { return bdev::flush(d, ch, 0, 1, cb, arg); });
    EXPECT_EQ(1, res.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
}

TEST_F(AioTest, MisalignedBuffersWorkWithODirect) {
    std::string file = make_file(dir_, "disk", 64 * 1024);
    ASSERT_EQ("aio0", create("aio0", file)["result"].asString());
    if (!bdev_aio::testing::uses_direct_io("aio0")) {
        GTEST_SKIP() << dir_ << " has no O_DIRECT";
    }
    bdev::Bdev *b = bdev::get_bdev("aio0");
    const uint32_t bs = b->block_size;
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);
    Buf raw = aligned_buf(2 * bs + 64);
    unsigned char *w = raw.get() + 8;  // O_DIRECT would refuse this address
    fill_pattern(w, 2 * bs, 11);
    Result res = run([&](auto cb, void *arg) { return bdev::write(d, ch, w, 1, 2, cb, arg); });
    EXPECT_EQ(1, res.ok);
    Buf rraw = aligned_buf(2 * bs + 64);
    unsigned char *rd = rraw.get() + 24;
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, rd, 1, 2, cb, arg); });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(0, std::memcmp(w, rd, 2 * bs));
    // And the direct path sees what the buffered one wrote.
    Buf al = aligned_buf(2 * bs);
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, al.get(), 1, 2, cb, arg); });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(0, std::memcmp(w, al.get(), 2 * bs));
    thread::put_io_channel(ch);
    bdev::close(d);
}

// More iovecs than preadv takes (1024): the layer splits them for us.
TEST_F(AioTest, RequestsWithMoreIovecsThanTheKernelTakesAreSplit) {
    const uint32_t bs = 4096;
    const int kSegs = 1104;  // 512-byte pieces: 138 blocks
    std::string file = make_file(dir_, "disk", 1 << 20);
    ASSERT_EQ("aio0", create("aio0", file, bs)["result"].asString());
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);
    Buf w = aligned_buf(kSegs * 512);
    fill_pattern(w.get(), kSegs * 512, 31);
    std::vector<iovec> wv(kSegs);
    for (int i = 0; i < kSegs; ++i) {
        wv[i] = {w.get() + i * 512, 512};
    }
    const uint64_t blocks = kSegs * 512 / bs;
    Result res = run([&](auto cb, void *arg) {
        return bdev::writev(d, ch, wv.data(), kSegs, 3, blocks, cb, arg);
    });
    EXPECT_EQ(1, res.ok);
    Buf r = aligned_buf(kSegs * 512, 0xee);
    std::vector<iovec> rv(kSegs);
    for (int i = 0; i < kSegs; ++i) {
        rv[i] = {r.get() + i * 512, 512};
    }
    res = run([&](auto cb, void *arg) {
        return bdev::readv(d, ch, rv.data(), kSegs, 3, blocks, cb, arg);
    });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(0, std::memcmp(w.get(), r.get(), kSegs * 512));
    int fd = ::open(file.c_str(), O_RDONLY);
    std::vector<unsigned char> got(kSegs * 512);
    ASSERT_EQ(static_cast<ssize_t>(got.size()), pread(fd, got.data(), got.size(), 3 * bs));
    ::close(fd);
    EXPECT_EQ(0, std::memcmp(w.get(), got.data(), got.size()));
    thread::put_io_channel(ch);
    bdev::close(d);
}

TEST_F(AioTest, ReapsWithIoGeteventsWhenTheRingIsNotUsed) {
    std::string file = make_file(dir_, "disk", 256 * 1024);
    bdev_aio::testing::set_use_completion_ring(false);
    ASSERT_EQ("aio0", create("aio0", file)["result"].asString());
    EXPECT_FALSE(bdev_aio::testing::channel_uses_ring("aio0"));
    bdev::Bdev *b = bdev::get_bdev("aio0");
    const uint32_t bs = b->block_size;
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);
    Buf w = aligned_buf(4 * bs);
    fill_pattern(w.get(), 4 * bs, 12);
    Result res =
        run([&](auto cb, void *arg) { return bdev::write(d, ch, w.get(), 0, 4, cb, arg); });
    EXPECT_EQ(1, res.ok);
    Buf rd = aligned_buf(4 * bs);
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, rd.get(), 0, 4, cb, arg); });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(0, std::memcmp(w.get(), rd.get(), 4 * bs));
    res = run([&](auto cb, void *arg) { return bdev::flush(d, ch, 0, 4, cb, arg); });
    EXPECT_EQ(1, res.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
}

// More than one context's depth (128) in flight, from two threads at once.
TEST_F(AioTest, ManyIosInFlightFromTwoThreadsAllComplete) {
    const int kPerThread = 200;
    // The read-back below keeps 2 * kPerThread in flight on one channel.
    struct PoolGuard {
        uint32_t saved = bdev::options().bdev_io_cache_size;
        PoolGuard() { bdev::options().bdev_io_cache_size = 512; }
        ~PoolGuard() { bdev::options().bdev_io_cache_size = saved; }
    } pool_guard;
    const uint32_t bs = 4096;
    std::string file = make_file(dir_, "disk", 2 * kPerThread * bs);
    ASSERT_EQ("aio0", create("aio0", file, bs)["result"].asString());
    bdev::Desc *d0 = open("aio0");
    bdev::Desc *d1 = nullptr;
    auto *ch0 = bdev::get_io_channel(d0);
    thread::IoChannel *ch1 = nullptr;
    on_t1([&] {
        ASSERT_EQ(0, bdev::open("aio0", true, nullptr, &d1));
        ch1 = bdev::get_io_channel(d1);
    });
    ASSERT_NE(nullptr, ch1);

    Buf w = aligned_buf(2 * kPerThread * bs);
    for (int i = 0; i < 2 * kPerThread; ++i) {
        fill_pattern(w.get() + i * bs, bs, 100 + i);
    }
    Result r0, r1;
    for (int i = 0; i < kPerThread; ++i) {
        ASSERT_EQ(0, bdev::write(d0, ch0, w.get() + i * bs, i, 1, on_done, &r0));
    }
    on_t1([&] {
        for (int i = kPerThread; i < 2 * kPerThread; ++i) {
            ASSERT_EQ(0, bdev::write(d1, ch1, w.get() + i * bs, i, 1, on_done, &r1));
        }
    });
    ASSERT_TRUE(pump_until([&] { return r0.done == kPerThread && r1.done == kPerThread; }))
        << r0.done << " " << r1.done;
    EXPECT_EQ(kPerThread, r0.ok);
    EXPECT_EQ(kPerThread, r1.ok);

    Buf rd = aligned_buf(2 * kPerThread * bs, 0xee);
    Result rr;
    for (int i = 0; i < 2 * kPerThread; ++i) {
        ASSERT_EQ(0, bdev::read(d0, ch0, rd.get() + i * bs, i, 1, on_done, &rr));
    }
    ASSERT_TRUE(pump_until([&] { return rr.done == 2 * kPerThread; }));
    EXPECT_EQ(2 * kPerThread, rr.ok);
    EXPECT_EQ(0, std::memcmp(w.get(), rd.get(), 2 * kPerThread * bs));

    // A reset with I/O in flight completes after it.
    Result rw, rs;
    for (int i = 0; i < 16; ++i) {
        ASSERT_EQ(0, bdev::write(d0, ch0, w.get() + i * bs, i, 1, on_done, &rw));
    }
    ASSERT_EQ(0, bdev::reset(d0, ch0, on_done, &rs));
    ASSERT_TRUE(pump_until([&] { return rs.done == 1; }));
    EXPECT_EQ(16, rw.done);
    EXPECT_EQ(1, rs.ok);

    on_t1([&] {
        thread::put_io_channel(ch1);
        bdev::close(d1);
    });
    thread::put_io_channel(ch0);
    bdev::close(d0);
}

TEST_F(AioTest, ShortReadPastEndOfFileIsAnError) {
    std::string file = make_file(dir_, "disk", 8 * 4096);
    ASSERT_EQ("aio0", create("aio0", file, 4096)["result"].asString());
    ASSERT_EQ(0, truncate(file.c_str(), 4 * 4096 + 512));  // behind the bdev's back
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);
    Buf rd = aligned_buf(2 * 4096);
    Result res =
        run([&](auto cb, void *arg) { return bdev::read(d, ch, rd.get(), 4, 2, cb, arg); });
    EXPECT_EQ(0, res.ok);
    EXPECT_EQ(bdev::nvme_status::kDataTransferError.sc, res.status.sc);
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, rd.get(), 6, 1, cb, arg); });
    EXPECT_EQ(0, res.ok);
    EXPECT_EQ(bdev::nvme_status::kDataTransferError.sc, res.status.sc);
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, rd.get(), 0, 2, cb, arg); });
    EXPECT_EQ(1, res.ok);
    thread::put_io_channel(ch);
    bdev::close(d);
}

// ---- Unmap, write zeroes and fallback flushes run on the channel's worker ----

// The worker is held, so the calls cannot have run anywhere else: after submit returns, and
// after the thread has polled for a while, nothing has completed and the file is unchanged.
// Released, everything completes on this thread and the file holds the zeroes.
TEST_F(AioTest, SubmitReturnsWhileTheWorkerHoldsTheFallocate) {
    const uint32_t bs = 4096;
    std::string file = make_file(dir_, "disk", 16 * bs);
    write_blocks(file, bs, 16);
    bdev_aio::testing::set_use_fdsync(false);  // flush as with a kernel without aio fsync
    ASSERT_EQ("aio0", create("aio0", file, bs)["result"].asString());
    bdev::Bdev *b = bdev::get_bdev("aio0");
    if (!b->ops->supports(IoType::Unmap)) {
        GTEST_SKIP() << dir_ << " cannot punch holes";
    }
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);

    bdev_aio::testing::hold_workers(true);
    Result ru, rz, rf;
    ASSERT_EQ(0, bdev::unmap(d, ch, 0, 2, on_done, &ru));
    ASSERT_EQ(0, bdev::write_zeroes(d, ch, 4, 2, on_done, &rz));
    ASSERT_EQ(0, bdev::flush(d, ch, 0, 16, on_done, &rf));
    EXPECT_EQ(0, ru.done + rz.done + rf.done);
    for (uint32_t blk = 0; blk < 8; ++blk) {
        EXPECT_TRUE(block_has_pattern(file, bs, blk)) << "block " << blk;
    }
    pump(50);  // returns: the reactor is not waiting for the worker
    EXPECT_EQ(0, ru.done + rz.done + rf.done);
    EXPECT_TRUE(block_has_pattern(file, bs, 0));
    EXPECT_TRUE(block_has_pattern(file, bs, 4));

    bdev_aio::testing::hold_workers(false);
    ASSERT_TRUE(pump_until([&] { return ru.done + rz.done + rf.done == 3; }));
    EXPECT_EQ(1, ru.ok);
    EXPECT_EQ(1, rz.ok);
    EXPECT_EQ(1, rf.ok);
    for (uint32_t blk = 0; blk < 8; ++blk) {
        bool zeroed = blk == 0 || blk == 1 || blk == 4 || blk == 5;
        EXPECT_EQ(zeroed, block_is_zero(file, bs, blk)) << "block " << blk;
        EXPECT_EQ(!zeroed, block_has_pattern(file, bs, blk)) << "block " << blk;
    }
    thread::put_io_channel(ch);
    bdev::close(d);
}

// Half as many again as a worker's rings hold, from two threads, submitted while the workers
// are held so that the rest wait on the channels' lists: all complete, each channel's in the
// order submitted, and a reset sent behind them completes after them.
TEST_F(AioTest, UnmapsAndWriteZeroesBeyondTheQueueDepthAllComplete) {
    const int depth = static_cast<int>(bdev_aio::testing::queue_depth());
    const int kPerThread = depth + depth / 2;  // with the reset, within one thread's bdev_ios
    const uint32_t bs = 4096;
    const auto blocks = static_cast<uint32_t>(2 * kPerThread);
    std::string file = make_file(dir_, "disk", static_cast<off_t>(blocks) * bs);
    write_blocks(file, bs, blocks);
    ASSERT_EQ("aio0", create("aio0", file, bs)["result"].asString());
    if (!bdev::get_bdev("aio0")->ops->supports(IoType::Unmap)) {
        GTEST_SKIP() << dir_ << " cannot punch holes";
    }
    bdev::Desc *d0 = open("aio0");
    bdev::Desc *d1 = nullptr;
    auto *ch0 = bdev::get_io_channel(d0);
    thread::IoChannel *ch1 = nullptr;
    on_t1([&] {
        ASSERT_EQ(0, bdev::open("aio0", true, nullptr, &d1));
        ch1 = bdev::get_io_channel(d1);
    });
    ASSERT_NE(nullptr, ch1);

    std::vector<int> order0, order1;
    std::vector<Ordered> ios(blocks);
    auto submit = [&](bdev::Desc *d, thread::IoChannel *ch, std::vector<int> *order, int first) {
        for (int i = first; i < first + kPerThread; ++i) {
            ios[i] = Ordered{order, i};
            auto blk = static_cast<uint64_t>(i);
            int rc = i % 2 == 0 ? bdev::unmap(d, ch, blk, 1, on_ordered, &ios[i])
                                : bdev::write_zeroes(d, ch, blk, 1, on_ordered, &ios[i]);
            ASSERT_EQ(0, rc) << i;
        }
    };
    bdev_aio::testing::hold_workers(true);
    submit(d0, ch0, &order0, 0);
    on_t1([&] { submit(d1, ch1, &order1, kPerThread); });
    Result rs;
    ASSERT_EQ(0, bdev::reset(d0, ch0, on_done, &rs));
    pump(20);
    EXPECT_TRUE(order0.empty());
    EXPECT_TRUE(order1.empty());
    EXPECT_EQ(0, rs.done);

    bdev_aio::testing::hold_workers(false);
    ASSERT_TRUE(pump_until([&] {
        return static_cast<int>(order0.size() + order1.size()) == 2 * kPerThread && rs.done == 1;
    })) << order0.size()
        << " " << order1.size() << " " << rs.done;
    EXPECT_EQ(1, rs.ok);
    for (int i = 0; i < kPerThread; ++i) {
        EXPECT_EQ(i, order0[i]);
        EXPECT_EQ(kPerThread + i, order1[i]);
    }
    int ok = 0;
    for (const Ordered &o : ios) {
        ok += o.ok ? 1 : 0;
    }
    EXPECT_EQ(2 * kPerThread, ok);
    std::vector<unsigned char> all = file_bytes(file, 0, static_cast<size_t>(blocks) * bs);
    EXPECT_TRUE(all_zero(all.data(), all.size()));

    on_t1([&] {
        thread::put_io_channel(ch1);
        bdev::close(d1);
    });
    thread::put_io_channel(ch0);
    bdev::close(d0);
}

// A channel put with fallocate work in its worker and more waiting for room (a misuse the
// layer logs): its destroy lets the worker finish what it was given, joins it, and touches
// none of the abandoned bdev_ios. ASan and TSan check the rest.
TEST_F(AioTest, ChannelDestroyWithFallocateInFlightIsSafe) {
    const uint32_t depth = bdev_aio::testing::queue_depth();
    const uint32_t n = depth + 40;
    const uint32_t bs = 4096;
    std::string file = make_file(dir_, "disk", static_cast<off_t>(n) * bs);
    write_blocks(file, bs, n);
    ASSERT_EQ("aio0", create("aio0", file, bs)["result"].asString());
    if (!bdev::get_bdev("aio0")->ops->supports(IoType::Unmap)) {
        GTEST_SKIP() << dir_ << " cannot punch holes";
    }
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);
    bdev_aio::testing::hold_workers(true);
    Result r;
    for (uint32_t i = 0; i < n; ++i) {
        ASSERT_EQ(0, bdev::unmap(d, ch, i, 1, on_done, &r)) << i;
    }
    pump(5);
    EXPECT_EQ(0, r.done);

    ::testing::internal::CaptureStderr();
    thread::put_io_channel(ch);
    bdev::close(d);
    int rc = -1;
    bdev_aio::destroy("aio0", [&](int x, const std::string &) { rc = x; });
    bool gone = pump_until([&] { return rc != -1; });  // every channel destroyed
    std::string log = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(gone);
    EXPECT_EQ(0, rc);
    EXPECT_EQ(0, r.done);  // abandoned, not completed after the channel went
    EXPECT_NE(std::string::npos,
              log.find("channel destroyed with " + std::to_string(n) + " I/O in flight"))
        << log;
    // What the worker had been given ran before it was joined.
    for (uint32_t i = 0; i < depth; ++i) {
        EXPECT_TRUE(block_is_zero(file, bs, i)) << "block " << i;
    }
}

// ---- The ring between a channel and its worker ----

TEST(AioSpscRingTest, KeepsOrderAndCapacityAndRefusesBadSizes) {
    bdev_aio::SpscRing<int> bad;
    EXPECT_FALSE(bad.init(0));
    EXPECT_FALSE(bad.init(12));
    int v = 0;
    EXPECT_FALSE(bad.push(1));  // never initialised: no room, nothing in it
    EXPECT_FALSE(bad.pop(&v));

    bdev_aio::SpscRing<int> r;
    ASSERT_TRUE(r.init(8));
    EXPECT_EQ(8u, r.capacity());
    EXPECT_TRUE(r.empty());
    int next_in = 0;
    int next_out = 0;
    for (int round = 0; round < 100; ++round) {  // the indexes wrap the slots many times
        while (r.push(next_in)) {
            ++next_in;
        }
        EXPECT_EQ(8, next_in - next_out);
        for (int k = 0; k < 5; ++k) {
            ASSERT_TRUE(r.pop(&v));
            EXPECT_EQ(next_out++, v);
        }
    }
    while (r.pop(&v)) {
        EXPECT_EQ(next_out++, v);
    }
    EXPECT_EQ(next_in, next_out);
    EXPECT_TRUE(r.empty());
}

// Two OS threads: every value arrives once, in order (TSan checks the publication).
TEST(AioSpscRingTest, PassesEveryValueBetweenTwoThreadsInOrder) {
    struct Item {
        uint64_t seq;
        uint64_t check;
    };
    bdev_aio::SpscRing<Item> r;
    ASSERT_TRUE(r.init(64));
    const uint64_t kCount = 200000;
    std::thread producer([&] {
        for (uint64_t i = 0; i < kCount; ++i) {
            while (!r.push(Item{i, ~i},
                           i % 2 == 0 ? std::memory_order_release : std::memory_order_seq_cst)) {
                std::this_thread::yield();
            }
        }
    });
    uint64_t expect = 0;
    bool in_order = true;
    while (expect < kCount) {
        Item it;
        if (!r.pop(&it)) {
            std::this_thread::yield();
            continue;
        }
        in_order = in_order && it.seq == expect && it.check == ~expect;
        ++expect;
    }
    producer.join();
    EXPECT_TRUE(in_order);
    EXPECT_TRUE(r.empty());
}

// ---- Size changes ----

TEST_F(AioTest, RescanAnnouncesGrowthAndRefusesShrinkWhileOpen) {
    std::string file = make_file(dir_, "disk", 16 * 4096);
    ASSERT_EQ("aio0", create("aio0", file, 4096)["result"].asString());
    bdev::Bdev *b = bdev::get_bdev("aio0");
    EXPECT_EQ(16u, b->num_blocks);
    bdev::Desc *d = open("aio0");

    // Unchanged: nothing to say.
    EXPECT_TRUE(named("bdev_aio_rescan", "aio0")["result"].asBool());
    pump();
    EXPECT_TRUE(events_.empty());

    ASSERT_EQ(0, truncate(file.c_str(), 40 * 4096 + 100));
    Json::Value r = named("bdev_aio_rescan", "aio0");
    EXPECT_TRUE(r["result"].asBool()) << r;
    pump();
    EXPECT_EQ(40u, b->num_blocks);
    ASSERT_EQ(1u, events_.size());
    EXPECT_EQ(bdev::EventType::Resize, events_[0]);

    // The new blocks take I/O.
    auto *ch = bdev::get_io_channel(d);
    Buf w = aligned_buf(4096, 0x5a);
    Result res =
        run([&](auto cb, void *arg) { return bdev::write(d, ch, w.get(), 39, 1, cb, arg); });
    EXPECT_EQ(1, res.ok);
    thread::put_io_channel(ch);

    ASSERT_EQ(0, truncate(file.c_str(), 8 * 4096));
    r = named("bdev_aio_rescan", "aio0");
    EXPECT_EQ(jsonrpc::kInvalidParams, r["error"]["code"].asInt()) << r;
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("shrank from 40 to 8")) << r;
    EXPECT_EQ(40u, b->num_blocks);

    bdev::close(d);
    pump();
    EXPECT_TRUE(named("bdev_aio_rescan", "aio0")["result"].asBool());
    EXPECT_EQ(8u, b->num_blocks);

    ASSERT_EQ(0, truncate(file.c_str(), 100));
    r = named("bdev_aio_rescan", "aio0");
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("smaller than one block"))
        << r;
    EXPECT_EQ(8u, b->num_blocks);

    r = named("bdev_aio_rescan", "nosuch");
    EXPECT_EQ(-ENODEV, r["error"]["code"].asInt());
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("'nosuch'")) << r;
}

// ---- Refused input changes nothing ----

TEST_F(AioTest, CreateRefusesBadInputWithAMessage) {
    std::string good = make_file(dir_, "good", 64 * 1024);
    std::string tiny = make_file(dir_, "tiny", 100);
    auto expect_error = [&](const Json::Value &params, const std::string &needle) {
        Json::Value r = rpc("bdev_aio_create", params);
        EXPECT_EQ(jsonrpc::kInvalidParams, r["error"]["code"].asInt()) << r;
        EXPECT_NE(std::string::npos, r["error"]["message"].asString().find(needle))
            << "wanted '" << needle << "' in " << r;
        EXPECT_TRUE(bdev::bdevs().empty());
    };
    auto params = [](const std::string &name, const std::string &file) {
        Json::Value p;
        p["name"] = name;
        p["filename"] = file;
        return p;
    };

    expect_error(params("a", dir_ + "/missing"), "'" + dir_ + "/missing' does not exist");
    expect_error(params("a", tiny), "is smaller than one block");
    expect_error(params("a", dir_), "");  // a directory
    Json::Value p = params("a", good);
    p["block_size"] = 1000;
    expect_error(p, "Invalid parameter 'block_size': 1000 is not a power of two");
    p["block_size"] = 256;
    expect_error(p, "Invalid parameter 'block_size': 256");
    p["block_size"] = 131072;
    expect_error(p, "Invalid parameter 'block_size': 131072");
    p["block_size"] = -1;
    expect_error(p, "block_size");
    p = params("a", good);
    p["uuid"] = "not-a-uuid";
    expect_error(p, "Invalid parameter 'uuid'");
    p = params("a", good);
    p["readonly"] = true;
    expect_error(p, "Invalid parameter 'readonly'");
    p = params("a", good);
    p["bogus"] = 1;
    expect_error(p, "bogus");
    expect_error(params("", good), "Invalid parameter 'name'");
    Json::Value nofile;
    nofile["name"] = "a";
    expect_error(nofile, "filename");

    // O_DIRECT cannot do blocks smaller than the file system's.
    {
        std::string f = make_file(dir_, "probe", 64 * 1024);
        ASSERT_EQ("probe", create("probe", f)["result"].asString());
        uint32_t detected = bdev::get_bdev("probe")->block_size;
        bool direct = bdev_aio::testing::uses_direct_io("probe");
        std::string err;
        int rc = -1;
        bdev_aio::destroy("probe", [&](int r, const std::string &) { rc = r; });
        ASSERT_TRUE(pump_until([&] { return rc != -1; }));
        if (direct && detected > 512) {
            p = params("a", good);
            p["block_size"] = 512;
            expect_error(p, "smaller than the block size " + std::to_string(detected) +
                                " that O_DIRECT needs");
        }
    }

    // A file we may not write. Root ignores modes, so make it immutable where we can.
    {
        std::string ro = make_file(dir_, "readonly", 64 * 1024);
        ASSERT_EQ(0, chmod(ro.c_str(), 0444));
        int fd = ::open(ro.c_str(), O_RDONLY);
        int flags = 0;
        bool immutable = false;
        if (geteuid() == 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
            int on = flags | FS_IMMUTABLE_FL;
            immutable = ioctl(fd, FS_IOC_SETFLAGS, &on) == 0;
        }
        if (geteuid() != 0 || immutable) {
            expect_error(params("a", ro), "cannot be opened for writing");
        }
        if (immutable) {
            ioctl(fd, FS_IOC_SETFLAGS, &flags);
        }
        ::close(fd);
    }

    // Name taken, by an aio bdev or another module's.
    ASSERT_EQ("a", create("a", good)["result"].asString());
    std::string other = make_file(dir_, "other", 64 * 1024);
    Json::Value r = create("a", other);
    EXPECT_EQ(-EEXIST, r["error"]["code"].asInt());
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("'a' already exists")) << r;
    std::string uuid = bdev::get_bdev("a")->uuid;
    p = params("b", other);
    p["uuid"] = uuid;
    r = rpc("bdev_aio_create", p);
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("uuid")) << r;
    EXPECT_EQ(1u, bdev::bdevs().size());
}

TEST_F(AioTest, DeleteRefusesUnknownAndForeignBdevs) {
    Json::Value r = named("bdev_aio_delete", "nosuch");
    EXPECT_EQ(-ENODEV, r["error"]["code"].asInt()) << r;  // SPDK's code, as malloc and null
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("'nosuch'")) << r;

    OtherOps ops;
    thread::io_device_register(&ops, nullptr, nullptr, 0, "other");
    bdev::Bdev other;
    other.name = "Other0";
    other.num_blocks = 8;
    other.module = &g_other_module;
    other.ops = &ops;
    ASSERT_EQ(0, bdev::register_bdev(&other));
    r = named("bdev_aio_delete", "Other0");
    EXPECT_EQ(-ENODEV, r["error"]["code"].asInt()) << r;
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("no aio bdev named")) << r;
    r = named("bdev_aio_rescan", "Other0");
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("not an aio bdev")) << r;
    EXPECT_EQ(&other, bdev::get_bdev("Other0"));

    int rc = -1;
    ASSERT_EQ(0, bdev::unregister_bdev(&other, [&](int x) { rc = x; }));
    ASSERT_TRUE(pump_until([&] { return rc != -1; }));
    bool unreg = false;
    thread::io_device_unregister(&ops, [&] { unreg = true; });
    ASSERT_TRUE(pump_until([&] { return unreg; }));
}

// ---- Lifetime ----

TEST_F(AioTest, DeleteWaitsForTheLastDescriptor) {
    std::string file = make_file(dir_, "disk", 64 * 1024);
    ASSERT_EQ("aio0", create("aio0", file)["result"].asString());
    bdev::Desc *d = open("aio0");
    auto *ch = bdev::get_io_channel(d);

    auto resp = std::make_shared<Json::Value>();
    Json::Value p;
    p["name"] = "aio0";
    auto req = std::make_shared<jsonrpc::Request>("bdev_aio_delete", p, Json::Value(7),
                                                  [resp](const Json::Value &r) { *resp = r; });
    event::rpc_registry().dispatch(req);
    req.reset();
    pump(50);
    EXPECT_TRUE(resp->isNull()) << *resp;  // not answered while open
    ASSERT_EQ(1u, events_.size());
    EXPECT_EQ(bdev::EventType::Remove, events_[0]);
    EXPECT_EQ(nullptr, bdev::get_bdev("aio0"));
    // Deleting again while it goes is refused.
    Json::Value again = named("bdev_aio_delete", "aio0");
    EXPECT_FALSE(again["error"].isNull()) << again;

    thread::put_io_channel(ch);
    bdev::close(d);
    ASSERT_TRUE(pump_until([&] { return !resp->isNull(); }));
    EXPECT_TRUE((*resp)["result"].asBool()) << *resp;
    EXPECT_TRUE(bdev::bdevs().empty());

    // The file is closed and free to reuse under the same name.
    ASSERT_EQ("aio0", create("aio0", file)["result"].asString());
}

TEST_F(AioTest, DeleteOfAClaimedBdevIsRefusedAndChangesNothing) {
    std::string file = make_file(dir_, "disk", 64 * 1024);
    ASSERT_EQ("aio0", create("aio0", file)["result"].asString());
    bdev::Desc *d = open("aio0");
    ASSERT_EQ(0, bdev::claim(d, "nvmf namespace 1"));
    Json::Value r = named("bdev_aio_delete", "aio0");
    EXPECT_EQ(-EBUSY, r["error"]["code"].asInt()) << r;
    EXPECT_NE(std::string::npos, r["error"]["message"].asString().find("nvmf namespace 1")) << r;
    EXPECT_NE(nullptr, bdev::get_bdev("aio0"));
    EXPECT_TRUE(events_.empty());  // no remove event went out
    bdev::close(d);
    r = named("bdev_aio_delete", "aio0");
    EXPECT_TRUE(r["result"].asBool()) << r;
}

// ---- Block devices ----

// Attaches file to a free loop device that detaches itself once the last user closes it.
// Returns the device path and an open descriptor of it, or "" where loop devices are not
// available (not root, a container without them).
std::string attach_loop(const std::string &file, int *loop_fd) {
    int ctl = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        return "";
    }
    std::string found;
    for (int tries = 0; tries < 5 && found.empty(); ++tries) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) {
            break;
        }
        std::string path = "/dev/loop" + std::to_string(n);
        int lfd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        int ffd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
        if (lfd >= 0 && ffd >= 0 && ioctl(lfd, LOOP_SET_FD, ffd) == 0) {
            loop_info64 info{};
            info.lo_flags = LO_FLAGS_AUTOCLEAR;
            ioctl(lfd, LOOP_SET_STATUS64, &info);
            *loop_fd = lfd;
            found = path;
        } else if (lfd >= 0) {
            ::close(lfd);
        }
        if (ffd >= 0) {
            ::close(ffd);
        }
    }
    ::close(ctl);
    return found;
}

TEST_F(AioTest, BlockDeviceGeometryDataAndRescan) {
    std::string file = make_file(dir_, "backing", 4 << 20);
    int loop_fd = -1;
    std::string dev = attach_loop(file, &loop_fd);
    if (dev.empty()) {
        GTEST_SKIP() << "no loop device available";
    }
    int lbs = 0;
    ASSERT_EQ(0, ioctl(loop_fd, BLKSSZGET, &lbs));
    Json::Value r = create("blk", dev);
    ASSERT_EQ("blk", r["result"].asString()) << r;
    bdev::Bdev *b = bdev::get_bdev("blk");
    EXPECT_EQ(static_cast<uint32_t>(lbs), b->block_size);
    EXPECT_EQ((4u << 20) / lbs, b->num_blocks);
    EXPECT_FALSE(b->ops->supports(IoType::Unmap));  // no hole punching on block devices
    EXPECT_TRUE(bdev_aio::testing::uses_direct_io("blk"));

    bdev::Desc *d = open("blk");
    auto *ch = bdev::get_io_channel(d);
    const uint32_t bs = b->block_size;
    Buf w = aligned_buf(8 * bs);
    fill_pattern(w.get(), 8 * bs, 21);
    Result res =
        run([&](auto cb, void *arg) { return bdev::write(d, ch, w.get(), 16, 8, cb, arg); });
    EXPECT_EQ(1, res.ok);
    res = run([&](auto cb, void *arg) { return bdev::flush(d, ch, 0, 1, cb, arg); });
    EXPECT_EQ(1, res.ok);
    Buf rd = aligned_buf(8 * bs);
    res = run([&](auto cb, void *arg) { return bdev::read(d, ch, rd.get(), 16, 8, cb, arg); });
    EXPECT_EQ(1, res.ok);
    EXPECT_EQ(0, std::memcmp(w.get(), rd.get(), 8 * bs));
    int ffd = ::open(file.c_str(), O_RDONLY);
    std::vector<unsigned char> got(8 * bs);
    ASSERT_EQ(static_cast<ssize_t>(8 * bs), pread(ffd, got.data(), 8 * bs, 16 * bs));
    ::close(ffd);
    EXPECT_EQ(0, std::memcmp(got.data(), w.get(), 8 * bs));

    // The device grows with its backing file; rescan sees it.
    ASSERT_EQ(0, truncate(file.c_str(), 8 << 20));
    ASSERT_EQ(0, ioctl(loop_fd, LOOP_SET_CAPACITY, 0));
    EXPECT_TRUE(named("bdev_aio_rescan", "blk")["result"].asBool());
    pump();
    EXPECT_EQ((8u << 20) / lbs, b->num_blocks);
    ASSERT_EQ(1u, events_.size());
    EXPECT_EQ(bdev::EventType::Resize, events_[0]);

    thread::put_io_channel(ch);
    bdev::close(d);
    int rc = -1;
    bdev_aio::destroy("blk", [&](int x, const std::string &) { rc = x; });
    ASSERT_TRUE(pump_until([&] { return rc != -1; }));
    EXPECT_EQ(0, rc);
    ::close(loop_fd);  // the last user: the loop device detaches
}

// ---- What save_config and bdev_get_bdevs show ----

TEST_F(AioTest, ConfigAndInfoMatchSpdk) {
    std::string file = make_file(dir_, "disk", 64 * 1024);
    ASSERT_EQ("auto", create("auto", file)["result"].asString());
    std::string file2 = make_file(dir_, "disk2", 64 * 1024);
    Json::Value p;
    p["name"] = "given";
    p["filename"] = file2;
    p["block_size"] = 8192;
    p["uuid"] = "0F3E5C1A-2B4D-4E6F-8A9B-0C1D2E3F4A5B";
    p["fallocate"] = false;
    p["readonly"] = false;
    ASSERT_EQ("given", rpc("bdev_aio_create", p)["result"].asString());

    bdev::Bdev *a = bdev::get_bdev("auto");
    bdev::Bdev *g = bdev::get_bdev("given");
    Json::Value cfg(Json::arrayValue);
    a->ops->write_config(cfg);
    g->ops->write_config(cfg);
    ASSERT_EQ(2u, cfg.size());
    EXPECT_EQ("bdev_aio_create", cfg[0]["method"].asString());
    EXPECT_EQ("auto", cfg[0]["params"]["name"].asString());
    EXPECT_EQ(file, cfg[0]["params"]["filename"].asString());
    EXPECT_FALSE(cfg[0]["params"].isMember("block_size"));  // detected: left to detect again
    EXPECT_EQ(a->uuid, cfg[0]["params"]["uuid"].asString());
    EXPECT_EQ(8192u, cfg[1]["params"]["block_size"].asUInt());
    EXPECT_EQ("0f3e5c1a-2b4d-4e6f-8a9b-0c1d2e3f4a5b", cfg[1]["params"]["uuid"].asString());
    EXPECT_FALSE(cfg[1]["params"]["fallocate"].asBool());
    EXPECT_EQ(8u, g->num_blocks);
    EXPECT_FALSE(g->ops->supports(IoType::Unmap));
    EXPECT_FALSE(g->ops->supports(IoType::WriteZeroes));
    EXPECT_TRUE(g->ops->supports(IoType::Flush));
    EXPECT_FALSE(g->ops->supports(IoType::Compare));

    Json::Value ds(Json::objectValue);
    a->ops->dump_info(ds);
    EXPECT_EQ(file, ds["aio"]["filename"].asString());
    EXPECT_FALSE(ds["aio"]["block_size_override"].asBool());
    EXPECT_FALSE(ds["aio"]["readonly"].asBool());
    EXPECT_EQ(a->ops->supports(IoType::Unmap), ds["aio"]["fallocate"].asBool());
    Json::Value ds2(Json::objectValue);
    g->ops->dump_info(ds2);
    EXPECT_TRUE(ds2["aio"]["block_size_override"].asBool());

    // The saved entries recreate the same bdevs.
    for (const char *n : {"auto", "given"}) {
        int rc = -1;
        bdev_aio::destroy(n, [&](int r, const std::string &) { rc = r; });
        ASSERT_TRUE(pump_until([&] { return rc != -1; }));
        ASSERT_EQ(0, rc);
    }
    for (const auto &e : cfg) {
        Json::Value r = rpc(e["method"].asString(), e["params"]);
        EXPECT_TRUE(r["error"].isNull()) << r;
    }
    EXPECT_EQ(cfg[0]["params"]["uuid"].asString(), bdev::get_bdev("auto")->uuid);
    EXPECT_EQ(8192u, bdev::get_bdev("given")->block_size);
}

}  // namespace
