// The malloc and null bdev modules against the real bdev layer, driven through their RPC
// methods. Two threads are polled by hand: "app" (RPC, open/close, subsystem init/fini) and
// "worker" (I/O through its own channel), so completions are seen on the submitting thread.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "../common/eal_env.h"
#include "../common/poll_threads.h"
#include "bdev_malloc.h"
#include "bdev_null.h"
#include "flint/bdev/module.h"
#include "flint/env/env.h"
#include "flint/event/app.h"
#include "flint/event/subsystem.h"
#include "flint/jsonrpc/jsonrpc.h"
#include "flint/thread/iobuf.h"
#include "flint/util/time.h"

using namespace flint;
using bdev::BdevIo;
using bdev::IoType;

namespace {

FLINT_TEST_EAL_ENV("bdev_malloc_null_test");

struct IoWait {
    bool done = false;
    bool success = false;
    bdev::NvmeStatus status;
};

void io_done(BdevIo *io, bool success, void *arg) {
    auto *w = static_cast<IoWait *>(arg);
    w->done = true;
    w->success = success;
    w->status = bdev::io_status(io);
    bdev::free_io(io);
}

const Json::Value kTrue(true);

bool same(bdev::NvmeStatus a, bdev::NvmeStatus b) {
    return a.sct == b.sct && a.sc == b.sc;
}

// A response as it arrives; shared so a late answer never writes to a dead frame.
struct Call {
    std::shared_ptr<Json::Value> response = std::make_shared<Json::Value>();
    std::shared_ptr<bool> answered = std::make_shared<bool>(false);
    jsonrpc::RequestPtr request;
};

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) {
        v[i] = static_cast<uint8_t>(seed + i * 7 + i / 511);
    }
    return v;
}

// iovecs over buf with the given lengths (their sum must not exceed buf).
std::vector<iovec> split(std::vector<uint8_t> &buf, std::initializer_list<size_t> lens) {
    std::vector<iovec> iov;
    size_t off = 0;
    for (size_t l : lens) {
        iov.push_back({buf.data() + off, l});
        off += l;
    }
    return iov;
}

class ModulesTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        bdev_malloc::register_module();
        bdev_null::register_module();
        thread::IobufOptions io_opts;  // small pools: the test EAL has 256 MiB
        io_opts.small_pool_count = 256;
        io_opts.large_pool_count = 64;
        ASSERT_EQ(0, thread::iobuf_set_options(io_opts, nullptr));
        bdev::register_subsystem();
        std::string err;
        ASSERT_TRUE(event::subsystems().resolve(&err)) << err;
        event::rpc_registry().set_state(jsonrpc::kRuntime);
    }

    void SetUp() override {
        thread::lib_init({});
        app_ = thread::create("app");
        worker_ = thread::create("worker");
        int rc = 1;
        on(app_, [&] { event::subsystems().init_all([&](int r) { rc = r; }); });
        ASSERT_TRUE(pump_until([&] { return rc != 1; }));
        ASSERT_EQ(0, rc);
    }

    void TearDown() override {
        // The bdev subsystem's fini deletes what a test left behind.
        bool done = false;
        on(app_, [&] { event::subsystems().fini_all([&] { done = true; }); });
        EXPECT_TRUE(pump_until([&] { return done; }));
        pump();  // the modules' io_devices finish unregistering
        EXPECT_TRUE(bdev::bdevs().empty());
        for (thread::Thread **tp : {&worker_, &app_}) {
            thread::Thread *t = *tp;
            on(t, [t] { t->exit(1000); });
            EXPECT_TRUE(pump_until([t] { return t->exited(); }));
            thread::Thread::destroy(t);
            *tp = nullptr;
        }
        EXPECT_TRUE(thread::lib_fini());
    }

    template <class F>
    void on(thread::Thread *t, F fn) {
        thread::set_current(t);
        fn();
        thread::set_current(nullptr);
    }

    void pump(int rounds = 50) { test::poll_threads({app_, worker_}, nullptr, rounds); }

    // Pumps until pred holds (the reset's drain poller needs real time), at most 10 s.
    template <class P>
    bool pump_until(P pred) {
        return test::step_until([&] { pump(1); }, pred);
    }

    // ---- RPC ----

    Call start_rpc(const std::string &method, const Json::Value &params) {
        Call c;
        auto response = c.response;
        auto answered = c.answered;
        c.request = std::make_shared<jsonrpc::Request>(method, params, Json::Value(1),
                                                       [response, answered](const Json::Value &r) {
                                                           *response = r;
                                                           *answered = true;
                                                       });
        on(app_, [&] { event::rpc_registry().dispatch(c.request); });
        return c;
    }

    Json::Value rpc(const std::string &method, const Json::Value &params) {
        Call c = start_rpc(method, params);
        EXPECT_TRUE(pump_until([&] { return *c.answered; })) << method << " did not answer";
        return *c.response;
    }

    static Json::Value parse(const std::string &text) {
        Json::Value v;
        Json::Reader reader;
        EXPECT_TRUE(reader.parse(text, v)) << text;
        return v;
    }

    // The result of a call that must succeed.
    Json::Value ok(const std::string &method, const std::string &params) {
        Json::Value r = rpc(method, parse(params));
        EXPECT_TRUE(r.isMember("result")) << method << " " << params << ": " << r.toStyledString();
        return r["result"];
    }

    std::string ok_name(const std::string &method, const std::string &params) {
        Json::Value r = ok(method, params);
        return r.isString() ? r.asString() : r.toStyledString();
    }

    // Expects an error with this code whose message contains `what`.
    void fails(const std::string &method, const std::string &params, int code,
               const std::string &what) {
        size_t before = bdev::bdevs().size();
        Json::Value r = rpc(method, parse(params));
        ASSERT_TRUE(r.isMember("error")) << method << " " << params << ": " << r.toStyledString();
        EXPECT_EQ(code, r["error"]["code"].asInt()) << method << " " << params;
        std::string msg = r["error"]["message"].asString();
        EXPECT_NE(std::string::npos, msg.find(what))
            << method << " " << params << ": '" << msg << "' lacks '" << what << "'";
        EXPECT_EQ(before, bdev::bdevs().size()) << method << " " << params << " changed bdevs";
    }

    // ---- I/O ----

    // An open descriptor (on the app thread) and the worker's channel.
    struct Open {
        bdev::Desc *desc = nullptr;
        thread::IoChannel *ch = nullptr;
        std::vector<bdev::EventType> events;
    };

    std::unique_ptr<Open> open(const std::string &name, bool write = true) {
        auto o = std::make_unique<Open>();
        Open *raw = o.get();
        int rc = -1;
        on(app_, [&] {
            rc = bdev::open(
                name, write, [raw](bdev::EventType e, bdev::Bdev *) { raw->events.push_back(e); },
                &raw->desc);
        });
        EXPECT_EQ(0, rc) << name;
        if (rc != 0) {
            return nullptr;
        }
        on(worker_, [&] { raw->ch = bdev::get_io_channel(raw->desc); });
        EXPECT_NE(nullptr, raw->ch);
        return o;
    }

    void close(std::unique_ptr<Open> &o) {
        on(worker_, [&] { thread::put_io_channel(o->ch); });
        pump();
        on(app_, [&] { bdev::close(o->desc); });
        pump();
        o.reset();
    }

    // Submits on the worker and waits for the completion, which must not run inside the
    // submit call.
    IoWait run(const std::function<int(IoWait *)> &submit) {
        IoWait w;
        int rc = -1;
        on(worker_, [&] { rc = submit(&w); });
        EXPECT_EQ(0, rc);
        if (rc != 0) {
            return w;
        }
        EXPECT_FALSE(w.done) << "completed inside submit";
        EXPECT_TRUE(pump_until([&] { return w.done; }));
        return w;
    }

    IoWait writev(Open &o, std::vector<iovec> iov, uint64_t off, uint64_t n) {
        return run([&](IoWait *w) {
            return bdev::writev(o.desc, o.ch, iov.data(), static_cast<int>(iov.size()), off, n,
                                io_done, w);
        });
    }
    IoWait readv(Open &o, std::vector<iovec> iov, uint64_t off, uint64_t n) {
        return run([&](IoWait *w) {
            return bdev::readv(o.desc, o.ch, iov.data(), static_cast<int>(iov.size()), off, n,
                               io_done, w);
        });
    }
    IoWait comparev(Open &o, std::vector<iovec> iov, uint64_t off, uint64_t n) {
        return run([&](IoWait *w) {
            return bdev::comparev(o.desc, o.ch, iov.data(), static_cast<int>(iov.size()), off, n,
                                  io_done, w);
        });
    }
    IoWait compare_and_write(Open &o, std::vector<uint8_t> &cmp, std::vector<uint8_t> &data,
                             uint64_t off, uint64_t n) {
        iovec c{cmp.data(), cmp.size()}, d{data.data(), data.size()};
        return run([&](IoWait *w) {
            return bdev::comparev_and_writev(o.desc, o.ch, &c, 1, &d, 1, off, n, io_done, w);
        });
    }
    IoWait unmap(Open &o, uint64_t off, uint64_t n) {
        return run([&](IoWait *w) { return bdev::unmap(o.desc, o.ch, off, n, io_done, w); });
    }
    IoWait write_zeroes(Open &o, uint64_t off, uint64_t n) {
        return run([&](IoWait *w) { return bdev::write_zeroes(o.desc, o.ch, off, n, io_done, w); });
    }
    IoWait flush(Open &o, uint64_t off, uint64_t n) {
        return run([&](IoWait *w) { return bdev::flush(o.desc, o.ch, off, n, io_done, w); });
    }
    IoWait reset(Open &o) {
        return run([&](IoWait *w) { return bdev::reset(o.desc, o.ch, io_done, w); });
    }
    // Reads n blocks at off into one buffer.
    std::vector<uint8_t> read(Open &o, uint64_t off, uint64_t n, uint32_t bs = 512) {
        std::vector<uint8_t> buf(n * bs, 0xee);
        IoWait w = run(
            [&](IoWait *w) { return bdev::read(o.desc, o.ch, buf.data(), off, n, io_done, w); });
        EXPECT_TRUE(w.success);
        return buf;
    }

    std::vector<std::string> worker_pollers() {
        std::vector<std::string> names;
        on(worker_, [&] {
            for (const auto &p : worker_->pollers(0)) {
                names.push_back(p.name);
            }
        });
        return names;
    }

    thread::Thread *app_ = nullptr;
    thread::Thread *worker_ = nullptr;
};

bool contains(const std::vector<std::string> &v, const std::string &s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// ---------------------------------------------------------------- malloc: RPC and fields

TEST_F(ModulesTest, MallocCreateNamesAndDescribesTheBdev) {
    // As in SPDK, a process-wide counter numbers the default names: other tests in this
    // process may have used some numbers already.
    std::string first = ok_name("bdev_malloc_create", R"({"num_blocks":16,"block_size":512})");
    ASSERT_EQ(0u, first.rfind("Malloc", 0)) << first;
    int n = std::stoi(first.substr(6));
    auto nth = [](int i) { return "Malloc" + std::to_string(i); };
    EXPECT_EQ(nth(n + 1), ok_name("bdev_malloc_create", R"({"num_blocks":16,"block_size":512})"));
    // An explicit name does not use up a number; a taken default name is skipped.
    EXPECT_EQ(nth(n + 2),
              ok_name("bdev_malloc_create", R"({"name":")" + nth(n + 2) + R"(","num_blocks":8,
                                      "block_size":4096,
                                      "uuid":"4A8E5B3C-1D2E-4F00-8A9B-0C1D2E3F4A5B",
                                      "optimal_io_boundary":4})"));
    EXPECT_EQ(nth(n + 3), ok_name("bdev_malloc_create", R"({"num_blocks":16,"block_size":512})"));

    bdev::Bdev *b = bdev::get_bdev(nth(n + 2));
    ASSERT_NE(nullptr, b);
    EXPECT_EQ("Malloc disk", b->product_name);
    EXPECT_EQ(4096u, b->block_size);
    EXPECT_EQ(8u, b->num_blocks);
    EXPECT_EQ("4a8e5b3c-1d2e-4f00-8a9b-0c1d2e3f4a5b", b->uuid);  // SPDK prints lower case
    EXPECT_EQ(4u, b->optimal_io_boundary);
    EXPECT_STREQ("malloc", b->module->name());
    EXPECT_EQ(36u, bdev::get_bdev(first)->uuid.size());  // generated by the layer

    Json::Value all = ok("bdev_get_bdevs", R"({"name":")" + nth(n + 2) + R"("})");
    ASSERT_EQ(1u, all.size());
    EXPECT_TRUE(all[0]["driver_specific"].isObject());
    for (const char *t : {"read", "write", "unmap", "write_zeroes", "flush", "reset", "compare"}) {
        EXPECT_TRUE(all[0]["supported_io_types"][t].asBool()) << t;
    }
    EXPECT_FALSE(all[0]["supported_io_types"]["compare_and_write"].asBool());

    for (int i = n; i < n + 4; ++i) {
        EXPECT_EQ(kTrue, ok("bdev_malloc_delete", R"({"name":")" + nth(i) + R"("})"));
    }
    EXPECT_TRUE(bdev::bdevs().empty());
}

TEST_F(ModulesTest, RegisterModuleIsIdempotent) {
    size_t mods = bdev::modules().size();
    bdev_malloc::register_module();
    bdev_null::register_module();
    EXPECT_EQ(mods, bdev::modules().size());
    for (const char *m : {"bdev_malloc_create", "bdev_malloc_delete", "bdev_null_create",
                          "bdev_null_delete", "bdev_null_resize"}) {
        EXPECT_TRUE(event::rpc_registry().has(m)) << m;
        EXPECT_EQ(jsonrpc::kRuntime, event::rpc_registry().states_of(m)) << m;
    }
}

// ---------------------------------------------------------------- malloc: I/O

TEST_F(ModulesTest, MallocWriteThenReadBackThroughUnevenIovecs) {
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":64,"block_size":512})");
    auto o = open("M");
    ASSERT_TRUE(o);
    EXPECT_TRUE(contains(worker_pollers(), "malloc_completion_poller"));

    // 8 blocks at block 5 from iovecs that cut blocks anywhere.
    auto data = pattern(8 * 512, 3);
    IoWait w = writev(*o, split(data, {100, 1000, 2996}), 5, 8);
    EXPECT_TRUE(w.success);
    EXPECT_TRUE(same(bdev::nvme_status::kSuccess, w.status));

    std::vector<uint8_t> back(8 * 512, 0xee);
    w = readv(*o, split(back, {7, 505, 1, 3583}), 5, 8);
    EXPECT_TRUE(w.success);
    EXPECT_EQ(data, back);

    // The single-buffer path, and the neighbours stay zero (the disk starts zeroed).
    auto around = read(*o, 4, 10);
    EXPECT_EQ(std::vector<uint8_t>(512, 0),
              std::vector<uint8_t>(around.begin(), around.begin() + 512));
    EXPECT_TRUE(std::equal(data.begin(), data.end(), around.begin() + 512));
    EXPECT_EQ(std::vector<uint8_t>(512, 0), std::vector<uint8_t>(around.end() - 512, around.end()));

    // The last block of the disk.
    auto last = pattern(512, 9);
    EXPECT_TRUE(writev(*o, split(last, {512}), 63, 1).success);
    EXPECT_EQ(last, read(*o, 63, 1));

    close(o);
    pump();
    EXPECT_FALSE(contains(worker_pollers(), "malloc_completion_poller"));
}

TEST_F(ModulesTest, MallocFourKBlocksAndBoundarySplitting) {
    // The layer splits at optimal_io_boundary; the pieces must land where they belong.
    ok("bdev_malloc_create",
       R"({"name":"M4k","num_blocks":32,"block_size":4096,"optimal_io_boundary":4})");
    auto o = open("M4k");
    ASSERT_TRUE(o);
    auto data = pattern(10 * 4096, 77);
    EXPECT_TRUE(writev(*o, split(data, {4096 * 3 + 100, 4096 * 7 - 100}), 2, 10).success);
    EXPECT_EQ(data, read(*o, 2, 10, 4096));
    std::vector<uint8_t> back(10 * 4096);
    EXPECT_TRUE(readv(*o, split(back, {1, 4095, 4096 * 9}), 2, 10).success);
    EXPECT_EQ(data, back);
    close(o);
}

TEST_F(ModulesTest, MallocUnmapAndWriteZeroesReadBackZeroes) {
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":32,"block_size":512})");
    auto o = open("M");
    ASSERT_TRUE(o);
    auto data = pattern(16 * 512, 1);
    ASSERT_TRUE(writev(*o, split(data, {16 * 512}), 0, 16).success);

    EXPECT_TRUE(unmap(*o, 2, 3).success);
    EXPECT_TRUE(write_zeroes(*o, 10, 4).success);

    auto back = read(*o, 0, 16);
    for (uint64_t blk = 0; blk < 16; ++blk) {
        bool zero = (blk >= 2 && blk < 5) || (blk >= 10 && blk < 14);
        std::vector<uint8_t> want =
            zero ? std::vector<uint8_t>(512, 0)
                 : std::vector<uint8_t>(data.begin() + blk * 512, data.begin() + (blk + 1) * 512);
        EXPECT_EQ(want,
                  std::vector<uint8_t>(back.begin() + blk * 512, back.begin() + (blk + 1) * 512))
            << "block " << blk;
    }
    close(o);
}

TEST_F(ModulesTest, MallocFlushResetAndCompare) {
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":32,"block_size":512})");
    auto o = open("M");
    ASSERT_TRUE(o);
    auto data = pattern(4 * 512, 5);
    ASSERT_TRUE(writev(*o, split(data, {4 * 512}), 8, 4).success);

    EXPECT_TRUE(flush(*o, 0, 32).success);
    IoWait r = reset(*o);
    EXPECT_TRUE(r.success);
    EXPECT_TRUE(same(bdev::nvme_status::kSuccess, r.status));
    EXPECT_EQ(data, read(*o, 8, 4));  // a reset keeps the data

    auto same_data = data;
    IoWait c = comparev(*o, split(same_data, {3, 509, 1536}), 8, 4);
    EXPECT_TRUE(c.success);

    auto other = data;
    other[3 * 512 + 17] ^= 0x40;  // differs in the last block only
    c = comparev(*o, split(other, {512, 1536}), 8, 4);
    EXPECT_FALSE(c.success);
    EXPECT_TRUE(same(bdev::nvme_status::kCompareFailure, c.status));
    EXPECT_EQ(2, c.status.sct);
    EXPECT_EQ(0x85, c.status.sc);
    close(o);
}

// Compare-and-write is the layer's (range lock, compare, write) over the modules' compare
// and write: the lock is granted on the app thread, the I/O runs on the worker.
TEST_F(ModulesTest, CompareAndWriteOnMallocAndNull) {
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":32,"block_size":512})");
    ok("bdev_null_create", R"({"name":"N","num_blocks":32,"block_size":512})");
    auto m = open("M");
    ASSERT_TRUE(m);
    auto first = pattern(512, 1), second = pattern(512, 2), third = pattern(512, 3);
    ASSERT_TRUE(writev(*m, split(first, {512}), 5, 1).success);
    IoWait w = compare_and_write(*m, first, second, 5, 1);
    EXPECT_TRUE(w.success);
    EXPECT_EQ(second, read(*m, 5, 1));
    w = compare_and_write(*m, first, third, 5, 1);  // holds `second` now
    EXPECT_FALSE(w.success);
    EXPECT_TRUE(same(bdev::nvme_status::kCompareFailure, w.status));
    EXPECT_EQ(second, read(*m, 5, 1));
    // Neither module aborts at the module: nothing held, so the abort fails, cleanly.
    IoWait a = run([&](IoWait *x) { return bdev::abort(m->desc, m->ch, x, io_done, x); });
    EXPECT_FALSE(a.success);
    close(m);

    auto n = open("N");
    ASSERT_TRUE(n);
    std::vector<uint8_t> zeroes(512, 0);
    EXPECT_TRUE(compare_and_write(*n, zeroes, first, 3, 1).success);  // reads stay zero
    EXPECT_FALSE(compare_and_write(*n, first, second, 3, 1).success);
    close(n);
}

TEST_F(ModulesTest, MallocOutOfRangeIoIsRejectedByTheLayer) {
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":16,"block_size":512})");
    auto o = open("M");
    ASSERT_TRUE(o);
    std::vector<uint8_t> buf(2 * 512);
    iovec iov{buf.data(), buf.size()};
    IoWait w;
    on(worker_, [&] {
        EXPECT_EQ(-EINVAL, bdev::readv(o->desc, o->ch, &iov, 1, 15, 2, io_done, &w));
        EXPECT_EQ(-EINVAL, bdev::writev(o->desc, o->ch, &iov, 1, 16, 2, io_done, &w));
        EXPECT_EQ(-EINVAL, bdev::unmap(o->desc, o->ch, UINT64_MAX, 2, io_done, &w));
        EXPECT_EQ(-EINVAL, bdev::write_zeroes(o->desc, o->ch, 0, 17, io_done, &w));
        // iovecs that do not cover the blocks exactly
        iovec short_iov{buf.data(), 1000};
        EXPECT_EQ(-EINVAL, bdev::writev(o->desc, o->ch, &short_iov, 1, 0, 2, io_done, &w));
    });
    pump();
    EXPECT_FALSE(w.done);
    close(o);
}

// ---------------------------------------------------------------- null: I/O

TEST_F(ModulesTest, NullReadsZeroesAndDropsWrites) {
    EXPECT_EQ("N",
              ok_name("bdev_null_create", R"({"name":"N","num_blocks":1024,"block_size":4096})"));
    bdev::Bdev *b = bdev::get_bdev("N");
    ASSERT_NE(nullptr, b);
    EXPECT_EQ("Null disk", b->product_name);
    EXPECT_STREQ("null", b->module->name());
    auto o = open("N");
    ASSERT_TRUE(o);
    EXPECT_TRUE(contains(worker_pollers(), "null_io_poll"));

    auto data = pattern(3 * 4096, 11);
    EXPECT_TRUE(writev(*o, split(data, {1, 4095, 8192}), 1000, 3).success);
    std::vector<uint8_t> back(3 * 4096, 0xaa);
    EXPECT_TRUE(readv(*o, split(back, {4097, 3, 8188}), 1000, 3).success);
    EXPECT_EQ(std::vector<uint8_t>(3 * 4096, 0), back);
    EXPECT_EQ(std::vector<uint8_t>(4096, 0), read(*o, 1023, 1, 4096));
    close(o);
}

TEST_F(ModulesTest, NullOtherIoTypes) {
    ok("bdev_null_create", R"({"name":"N","num_blocks":64,"block_size":512})");
    auto o = open("N");
    ASSERT_TRUE(o);
    EXPECT_TRUE(unmap(*o, 0, 64).success);
    EXPECT_TRUE(write_zeroes(*o, 3, 9).success);
    EXPECT_TRUE(flush(*o, 0, 64).success);
    EXPECT_TRUE(reset(*o).success);

    std::vector<uint8_t> zeros(4 * 512, 0);
    EXPECT_TRUE(comparev(*o, split(zeros, {100, 1948}), 7, 4).success);
    auto nonzero = zeros;
    nonzero[2047] = 1;  // the very last byte
    IoWait c = comparev(*o, split(nonzero, {100, 1948}), 7, 4);
    EXPECT_FALSE(c.success);
    EXPECT_TRUE(same(bdev::nvme_status::kCompareFailure, c.status));
    nonzero[2047] = 0;
    nonzero[0] = 0x80;  // the very first byte
    EXPECT_FALSE(comparev(*o, split(nonzero, {2048}), 7, 4).success);

    std::vector<uint8_t> buf(512);
    iovec iov{buf.data(), buf.size()};
    IoWait w;
    on(worker_, [&] {
        EXPECT_EQ(-EINVAL, bdev::readv(o->desc, o->ch, &iov, 1, 64, 1, io_done, &w));
        EXPECT_EQ(-EINVAL, bdev::flush(o->desc, o->ch, 60, 5, io_done, &w));
    });
    pump();
    EXPECT_FALSE(w.done);
    close(o);
}

TEST_F(ModulesTest, ManyIosInFlightCompleteInOrder) {
    ok("bdev_null_create", R"({"name":"N","num_blocks":1024,"block_size":512})");
    auto o = open("N");
    ASSERT_TRUE(o);
    constexpr int kN = 200;
    std::vector<uint8_t> buf(512);
    std::vector<int> ids(kN);
    std::iota(ids.begin(), ids.end(), 0);
    static std::vector<int> order;
    order.clear();
    on(worker_, [&] {
        for (int i = 0; i < kN; ++i) {
            ASSERT_EQ(0, bdev::read(
                             o->desc, o->ch, buf.data(), i, 1,
                             [](BdevIo *io, bool ok, void *arg) {
                                 order.push_back(*static_cast<int *>(arg));
                                 bdev::free_io(io);
                             },
                             &ids[i]));
        }
    });
    EXPECT_TRUE(order.empty());
    EXPECT_TRUE(pump_until([&] { return order.size() == kN; }));
    std::vector<int> want(kN);
    std::iota(want.begin(), want.end(), 0);
    EXPECT_EQ(want, order);
    close(o);
}

// ---------------------------------------------------------------- null: resize

TEST_F(ModulesTest, NullResizeGrowsAndNotifies) {
    ok("bdev_null_create", R"({"name":"N","num_blocks":2048,"block_size":512})");  // 1 MiB
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":16,"block_size":512})");
    auto o = open("N");
    ASSERT_TRUE(o);
    EXPECT_EQ(kTrue, ok("bdev_null_resize", R"({"name":"N","new_size":4})"));
    EXPECT_EQ(4u * 2048, bdev::get_bdev("N")->num_blocks);
    pump();
    ASSERT_EQ(1u, o->events.size());
    EXPECT_EQ(bdev::EventType::Resize, o->events[0]);
    EXPECT_EQ(std::vector<uint8_t>(512, 0), read(*o, 4 * 2048 - 1, 1));  // the new end

    fails("bdev_null_resize", R"({"name":"N","new_size":2})", jsonrpc::kInvalidParams,
          "Invalid parameter 'new_size'");
    fails("bdev_null_resize", R"({"name":"N","new_size":0})", jsonrpc::kInvalidParams,
          "Invalid parameter 'new_size'");
    fails("bdev_null_resize", R"({"name":"N"})", jsonrpc::kInvalidParams, "'new_size'");
    fails("bdev_null_resize", R"({"name":"nope","new_size":8})", -ENODEV, "No such device");
    fails("bdev_null_resize", R"({"name":"M","new_size":8})", -ENODEV, "No such device");
    EXPECT_EQ(4u * 2048, bdev::get_bdev("N")->num_blocks);
    EXPECT_EQ(16u, bdev::get_bdev("M")->num_blocks);
    close(o);
}

// ---------------------------------------------------------------- bad input

TEST_F(ModulesTest, MallocCreateRejectsBadInput) {
    const int kInvalid = jsonrpc::kInvalidParams;
    fails("bdev_malloc_create", R"({"num_blocks":0,"block_size":512})", kInvalid,
          "'num_blocks': must be greater than 0");
    for (const char *bs : {"0", "256", "1000", "520", "8192", "65536"}) {
        fails("bdev_malloc_create", std::string(R"({"num_blocks":8,"block_size":)") + bs + "}",
              kInvalid, "Invalid parameter 'block_size'");
    }
    fails("bdev_malloc_create", R"({"block_size":512})", kInvalid, "'num_blocks'");
    fails("bdev_malloc_create", R"({"num_blocks":8})", kInvalid, "'block_size'");
    fails("bdev_malloc_create", R"({"num_blocks":"8","block_size":512})", kInvalid, "'num_blocks'");
    fails("bdev_malloc_create", R"({"num_blocks":-1,"block_size":512})", kInvalid, "'num_blocks'");
    fails("bdev_malloc_create", R"({"name":"","num_blocks":8,"block_size":512})", kInvalid,
          "'name'");
    for (const char *u :
         {"xyz", "4a8e5b3c1d2e4f008a9b0c1d2e3f4a5b", "4a8e5b3c-1d2e-4f00-8a9b-0c1d2e3f4a5",
          "4a8e5b3c-1d2e-4f00-8a9b_0c1d2e3f4a5b", "4a8e5b3c-1d2e-4f00-8a9b-0c1d2e3f4a5g"}) {
        fails("bdev_malloc_create",
              std::string(R"({"num_blocks":8,"block_size":512,"uuid":")") + u + "\"}", kInvalid,
              "Invalid parameter 'uuid'");
    }
    fails("bdev_malloc_create", R"({"num_blocks":8,"block_size":512,"color":"red"})", kInvalid,
          "'color'");
    fails("bdev_malloc_create", R"({"num_blocks":8,"block_size":512,"md_size":8})", kInvalid,
          "'md_size'");
    fails("bdev_malloc_create", R"({"num_blocks":8,"block_size":512,"dif_type":1})", kInvalid,
          "'dif_type'");
    // 1 TiB: more than the DMA heap.
    fails("bdev_malloc_create", R"({"name":"Huge","num_blocks":268435456,"block_size":4096})",
          -ENOMEM, "could not allocate");
    fails("bdev_malloc_create", R"({"num_blocks":18446744073709551615,"block_size":4096})",
          kInvalid, "'num_blocks'");
    EXPECT_EQ(nullptr, bdev::get_bdev("Huge"));

    // SPDK's saved configs carry the metadata params with their "none" values.
    EXPECT_EQ("Spdk", ok_name("bdev_malloc_create",
                              R"({"name":"Spdk","num_blocks":8,"block_size":512,
                             "physical_block_size":4096,"md_size":0,"md_interleave":false,
                             "dif_type":0,"dif_is_head_of_md":false})"));
}

TEST_F(ModulesTest, NullCreateRejectsBadInput) {
    const int kInvalid = jsonrpc::kInvalidParams;
    fails("bdev_null_create", R"({"num_blocks":8,"block_size":512})", kInvalid, "'name'");
    fails("bdev_null_create", R"({"name":"","num_blocks":8,"block_size":512})", kInvalid, "'name'");
    fails("bdev_null_create", R"({"name":"N","num_blocks":0,"block_size":512})", kInvalid,
          "'num_blocks': must be greater than 0");
    for (const char *bs : {"0", "511", "520", "4160", "3072", "8192"}) {
        fails("bdev_null_create",
              std::string(R"({"name":"N","num_blocks":8,"block_size":)") + bs + "}", kInvalid,
              "Invalid parameter 'block_size'");
    }
    fails("bdev_null_create", R"({"name":"N","num_blocks":8,"block_size":512,"uuid":"abc"})",
          kInvalid, "Invalid parameter 'uuid'");
    fails("bdev_null_create", R"({"name":"N","num_blocks":8,"block_size":512,"md_size":8})",
          kInvalid, "'md_size'");
    fails("bdev_null_create", R"({"name":"N","num_blocks":9223372036854775807,"block_size":512})",
          kInvalid, "'num_blocks'");
    // Huge but sizeless: a null bdev needs no memory.
    EXPECT_EQ("Big", ok_name("bdev_null_create",
                             R"({"name":"Big","num_blocks":1099511627776,"block_size":4096})"));
}

TEST_F(ModulesTest, NamesAndUuidsAreUniqueAcrossModules) {
    ok("bdev_malloc_create", R"({"name":"dup","num_blocks":8,"block_size":512,
                                 "uuid":"11111111-2222-4333-8444-555555555555"})");
    fails("bdev_malloc_create", R"({"name":"dup","num_blocks":8,"block_size":512})", -EEXIST,
          "bdev name 'dup' already exists");
    fails("bdev_null_create", R"({"name":"dup","num_blocks":8,"block_size":512})", -EEXIST,
          "bdev name 'dup' already exists");
    fails("bdev_null_create", R"({"name":"other","num_blocks":8,"block_size":512,
                                  "uuid":"11111111-2222-4333-8444-555555555555"})",
          -EEXIST, "uuid '11111111-2222-4333-8444-555555555555' already exists");
    fails("bdev_malloc_create", R"({"name":"other","num_blocks":8,"block_size":512,
                                    "uuid":"11111111-2222-4333-8444-555555555555"})",
          -EEXIST, "already exists");
    EXPECT_EQ(8u, bdev::get_bdev("dup")->num_blocks);
    EXPECT_EQ(nullptr, bdev::get_bdev("other"));
}

TEST_F(ModulesTest, DeleteRefusesWhatItMustNotDelete) {
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":8,"block_size":512})");
    ok("bdev_null_create", R"({"name":"N","num_blocks":8,"block_size":512})");
    fails("bdev_malloc_delete", R"({"name":"nope"})", -ENODEV, "No such device");
    fails("bdev_null_delete", R"({"name":"nope"})", -ENODEV, "No such device");
    // The other module's bdev.
    fails("bdev_malloc_delete", R"({"name":"N"})", -ENODEV, "No such device");
    fails("bdev_null_delete", R"({"name":"M"})", -ENODEV, "No such device");
    fails("bdev_malloc_delete", R"({})", jsonrpc::kInvalidParams, "'name'");
    fails("bdev_null_delete", R"({"name":"N","force":true})", jsonrpc::kInvalidParams, "'force'");

    // Claimed: refused, naming the owner, until the claim is released.
    auto o = open("M");
    ASSERT_TRUE(o);
    on(app_, [&] { ASSERT_EQ(0, bdev::claim(o->desc, "nvmf_tgt nqn.2016-06.io.spdk:cnode1")); });
    fails("bdev_malloc_delete", R"({"name":"M"})", -EBUSY,
          "claimed by 'nvmf_tgt nqn.2016-06.io.spdk:cnode1'");
    EXPECT_NE(nullptr, bdev::get_bdev("M"));
    EXPECT_TRUE(o->events.empty());
    close(o);
    EXPECT_EQ(kTrue, ok("bdev_malloc_delete", R"({"name":"M"})"));
    EXPECT_EQ(kTrue, ok("bdev_null_delete", R"({"name":"N"})"));
    EXPECT_TRUE(bdev::bdevs().empty());
    fails("bdev_null_delete", R"({"name":"N"})", -ENODEV, "No such device");
}

TEST_F(ModulesTest, DeleteWaitsForOpenDescriptors) {
    for (const char *kind : {"malloc", "null"}) {
        SCOPED_TRACE(kind);
        std::string k = kind;
        ok("bdev_" + k + "_create", R"({"name":"D","num_blocks":8,"block_size":512})");
        auto o = open("D");
        ASSERT_TRUE(o);
        auto data = pattern(512, 1);
        ASSERT_TRUE(writev(*o, split(data, {512}), 0, 1).success);

        Call del = start_rpc("bdev_" + k + "_delete", parse(R"({"name":"D"})"));
        pump();
        EXPECT_FALSE(*del.answered);  // waits for the descriptor
        ASSERT_EQ(1u, o->events.size());
        EXPECT_EQ(bdev::EventType::Remove, o->events[0]);
        EXPECT_EQ(nullptr, bdev::get_bdev("D"));  // already invisible
        fails("bdev_" + k + "_delete", R"({"name":"D"})", -ENODEV, "No such device");
        // The name is not free until the bdev is gone.
        fails("bdev_" + k + "_create", R"({"name":"D","num_blocks":8,"block_size":512})", -EEXIST,
              "already exists");

        close(o);
        EXPECT_TRUE(pump_until([&] { return *del.answered; }));
        EXPECT_EQ(kTrue, (*del.response)["result"]) << del.response->toStyledString();
        EXPECT_TRUE(bdev::bdevs().empty());
    }
}

// ---------------------------------------------------------------- save_config

TEST_F(ModulesTest, SaveConfigRecreatesTheBdevs) {
    ok("bdev_malloc_create", R"({"name":"M","num_blocks":64,"block_size":4096,
                                 "uuid":"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
                                 "optimal_io_boundary":8})");
    std::string dflt = ok_name("bdev_malloc_create", R"({"num_blocks":16,"block_size":512})");
    ok("bdev_null_create", R"({"name":"N","num_blocks":100,"block_size":1024})");

    // No module-wide entries.
    for (bdev::Module *m : bdev::modules()) {
        Json::Value cfg(Json::arrayValue);
        m->write_config(cfg);
        EXPECT_EQ(0u, cfg.size()) << m->name();
    }

    Json::Value cfg(Json::arrayValue);
    on(app_, [&] { event::subsystems().find("bdev")->write_config(cfg); });
    std::vector<Json::Value> ours;
    for (const auto &e : cfg) {
        std::string m = e["method"].asString();
        if (m == "bdev_malloc_create" || m == "bdev_null_create") {
            ours.push_back(e);
        }
    }
    ASSERT_EQ(3u, ours.size()) << cfg.toStyledString();
    // Compared as text: jsoncpp's == also compares int against uint types.
    EXPECT_EQ(jsonrpc::to_string(parse(R"({"method":"bdev_malloc_create","params":{"name":"M",
                  "num_blocks":64,"block_size":4096,"uuid":"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
                  "optimal_io_boundary":8}})")),
              jsonrpc::to_string(ours[0]));
    EXPECT_EQ(dflt, ours[1]["params"]["name"].asString());
    EXPECT_EQ(0u, ours[1]["params"]["optimal_io_boundary"].asUInt());
    EXPECT_EQ(bdev::get_bdev(dflt)->uuid, ours[1]["params"]["uuid"].asString());
    Json::Value null_params = ours[2]["params"];
    EXPECT_EQ("bdev_null_create", ours[2]["method"].asString());
    EXPECT_EQ((std::vector<std::string>{"block_size", "name", "num_blocks", "uuid"}),
              null_params.getMemberNames());
    EXPECT_EQ(100u, null_params["num_blocks"].asUInt64());
    EXPECT_EQ(1024u, null_params["block_size"].asUInt());
    EXPECT_EQ(bdev::get_bdev("N")->uuid, null_params["uuid"].asString());

    // Replay: delete everything and run the saved entries.
    ok("bdev_malloc_delete", R"({"name":"M"})");
    ok("bdev_malloc_delete", R"({"name":")" + dflt + R"("})");
    ok("bdev_null_delete", R"({"name":"N"})");
    ASSERT_TRUE(bdev::bdevs().empty());
    for (const auto &e : ours) {
        Json::Value r = rpc(e["method"].asString(), e["params"]);
        EXPECT_EQ(e["params"]["name"], r["result"]) << r.toStyledString();
    }
    bdev::Bdev *m = bdev::get_bdev("M");
    ASSERT_NE(nullptr, m);
    EXPECT_EQ("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", m->uuid);
    EXPECT_EQ(8u, m->optimal_io_boundary);
    EXPECT_EQ(null_params["uuid"].asString(), bdev::get_bdev("N")->uuid);
    // Left for the subsystem's fini to delete.
}

// The null bdev's resized size is what save_config records.
TEST_F(ModulesTest, SaveConfigRecordsTheResizedNullSize) {
    ok("bdev_null_create", R"({"name":"N","num_blocks":2048,"block_size":512})");
    ok("bdev_null_resize", R"({"name":"N","new_size":3})");
    Json::Value cfg(Json::arrayValue);
    bdev::get_bdev("N")->ops->write_config(cfg);
    ASSERT_EQ(1u, cfg.size());
    EXPECT_EQ(3u * 2048, cfg[0]["params"]["num_blocks"].asUInt64());
}

}  // namespace
