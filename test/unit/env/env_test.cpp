// The env layer against the real EAL. DPDK allows one init per process, so every EAL test
// shares the init in EnvTest::SetUpTestSuite. ctest runs each test in its own process; run
// directly, the binary runs EnvParse (which must not touch the EAL) before EnvTest.

#include "flint/env/env.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace flint::env {
namespace {

// Where DPDK puts this process's runtime directory (see eal_create_runtime_dir).
std::string runtime_dir() {
    std::string base = "/var/run";
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (getuid() != 0) {
        base = xdg != nullptr ? xdg : "/tmp";
    }
    return base + "/dpdk/env_test_" + std::to_string(getpid());
}

Options test_options() {
    Options o;
    o.name = "env_test";
    o.core_mask = "0x3";
    o.no_huge = true;
    o.mem_size_mb = 128;
    return o;
}

// Set once EnvTest has initialised the EAL in this process: DPDK cannot init again, even
// after fini, so the parse tests below skip (only happens with --gtest_shuffle).
bool g_eal_used = false;
// What EnvTest::SetUpTestSuite got back from init.
int g_bad_rc = 0;
int g_init_rc = 0;
std::string g_init_error;

// --- Validation that must fail before rte_eal_init, leaving the one-shot init unused. ---

TEST(EnvParse, BadMasksFailBeforeEal) {
    if (g_eal_used) {
        GTEST_SKIP() << "EAL already initialised in this process";
    }
    // "0x10000" is core 16 (not on a 2-core machine); 200 exceeds RTE_MAX_LCORE.
    for (std::string mask : {"0xZ", "", "0x0", "[0,1", "0x10000", "[200]"}) {
        Options o = test_options();
        o.core_mask = mask;
        std::string error;
        EXPECT_EQ(init(o, &error), -EINVAL) << mask;
        EXPECT_NE(error.find("'" + mask + "'"), std::string::npos) << error;
        EXPECT_FALSE(initialized());
    }
}

TEST(EnvParse, MainCoreOutsideMask) {
    if (g_eal_used) {
        GTEST_SKIP() << "EAL already initialised in this process";
    }
    Options o = test_options();
    o.main_core = 1;
    o.core_mask = "0x1";
    std::string error;
    EXPECT_EQ(init(o, &error), -EINVAL);
    EXPECT_NE(error.find("main core 1"), std::string::npos) << error;
    EXPECT_FALSE(initialized());
}

TEST(EnvParse, NothingWorksBeforeInit) {
    if (g_eal_used) {
        GTEST_SKIP() << "EAL already initialised in this process";
    }
    EXPECT_EQ(launch_pinned(1, [] { return 0; }), -EINVAL);
    EXPECT_EQ(dma_zmalloc(64, 64), nullptr);
    EXPECT_EQ(vtophys(&errno), UINT64_MAX);
    EXPECT_EQ(Mempool::create("early", 8, 64, 0), nullptr);
    EXPECT_EQ(current_core(), UINT32_MAX);
    EXPECT_EQ(main_core(), UINT32_MAX);
    EXPECT_TRUE(cores().empty());
    wait_all();
    fini();  // safe without init
}

// --- Tests sharing one EAL init. ---

class EnvTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        g_eal_used = true;
        // A parse failure first: it must not consume the one init DPDK allows.
        Options bad = test_options();
        bad.core_mask = "0xZ";
        std::string error;
        g_bad_rc = init(bad, &error);
        g_init_rc = init(test_options(), &g_init_error);
    }
    static void TearDownTestSuite() {
        fini();
        EXPECT_FALSE(initialized());
        EXPECT_FALSE(std::filesystem::exists(runtime_dir())) << runtime_dir();
        // DPDK cannot init twice in a process, even after cleanup.
        EXPECT_EQ(init(test_options(), nullptr), -EALREADY);
    }
    void SetUp() override {
        ASSERT_TRUE(initialized()) << "init failed: " << g_init_rc << " " << g_init_error;
    }
};

TEST_F(EnvTest, InitSucceedsAfterParseFailure) {
    EXPECT_EQ(g_bad_rc, -EINVAL);
    EXPECT_EQ(g_init_rc, 0) << g_init_error;
    EXPECT_TRUE(initialized());
    EXPECT_TRUE(using_no_huge());
}

TEST_F(EnvTest, SecondInitIsAlready) {
    std::string error;
    EXPECT_EQ(init(test_options(), &error), -EALREADY);
    EXPECT_FALSE(error.empty());
    EXPECT_EQ(init(test_options(), nullptr), -EALREADY);
    EXPECT_TRUE(initialized());
}

TEST_F(EnvTest, Cores) {
    EXPECT_EQ(cores().cores(), (std::vector<uint32_t>{0, 1}));
    EXPECT_EQ(main_core(), 0u);
    EXPECT_EQ(current_core(), 0u);
}

TEST_F(EnvTest, RuntimeDirIsRemovedAfterInit) {
    // Nothing in it is used after init, so a killed process must not leave it behind.
    std::filesystem::path dir = runtime_dir();
    EXPECT_TRUE(std::filesystem::is_directory(dir.parent_path())) << "DPDK did not use " << dir;
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
}

TEST_F(EnvTest, NonEalThreadHasNoCore) {
    uint32_t seen = 0;
    std::thread t([&] { seen = current_core(); });
    t.join();
    EXPECT_EQ(seen, UINT32_MAX);
}

TEST_F(EnvTest, LaunchPinnedRunsOnItsCore) {
    std::atomic<uint32_t> seen{UINT32_MAX - 1};
    ASSERT_EQ(launch_pinned(1,
                            [&] {
                                seen = current_core();
                                return 0;
                            }),
              0);
    wait_all();
    EXPECT_EQ(seen.load(), 1u);

    // The lcore can be reused once its function returned.
    std::atomic<int> runs{0};
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(launch_pinned(1, [&] { return ++runs; }), 0);
        wait_all();
    }
    EXPECT_EQ(runs.load(), 3);
}

TEST_F(EnvTest, LaunchRejectsBadCores) {
    EXPECT_EQ(launch_pinned(0, [] { return 0; }), -EINVAL);  // the main core
    EXPECT_EQ(launch_pinned(5, [] { return 0; }), -EINVAL);  // outside the mask
    EXPECT_EQ(launch_pinned(UINT32_MAX, [] { return 0; }), -EINVAL);
    EXPECT_EQ(launch_pinned(1, std::function<int()>()), -EINVAL);  // empty function
}

TEST_F(EnvTest, LaunchBusyCore) {
    std::atomic<bool> started{false};
    std::atomic<bool> release{false};
    ASSERT_EQ(launch_pinned(1,
                            [&] {
                                started = true;
                                while (!release) {
                                    std::this_thread::yield();
                                }
                                return 0;
                            }),
              0);
    while (!started) {
        std::this_thread::yield();
    }
    EXPECT_EQ(launch_pinned(1, [] { return 0; }), -EBUSY);
    release = true;
    wait_all();
    EXPECT_EQ(launch_pinned(1, [] { return 0; }), 0);
    wait_all();
}

TEST_F(EnvTest, ThrowingFunctionDoesNotKillTheProcess) {
    ASSERT_EQ(launch_pinned(1, []() -> int { throw std::runtime_error("boom"); }), 0);
    wait_all();
    std::atomic<bool> ran{false};
    ASSERT_EQ(launch_pinned(1,
                            [&] {
                                ran = true;
                                return 0;
                            }),
              0);
    wait_all();
    EXPECT_TRUE(ran.load());
}

TEST_F(EnvTest, DmaZmallocIsZeroedAndAligned) {
    for (size_t align : {size_t{64}, size_t{4096}}) {
        const size_t size = 3 * 4096 + 17;
        DmaPtr buf(dma_zmalloc(size, align));
        ASSERT_NE(buf, nullptr) << "align " << align;
        auto addr = reinterpret_cast<uintptr_t>(buf.get());
        EXPECT_EQ(addr % align, 0u) << "align " << align;
        auto *bytes = static_cast<unsigned char *>(buf.get());
        for (size_t i = 0; i < size; ++i) {
            ASSERT_EQ(bytes[i], 0) << "byte " << i;
        }
        std::memset(bytes, 0xab, size);

        uint64_t iova = vtophys(buf.get());
        EXPECT_NE(iova, UINT64_MAX);
        // Interior pointers translate too (IOVA-as-VA here keeps pages contiguous).
        EXPECT_EQ(vtophys(bytes + 4100), iova + 4100);
    }
    // Default alignment is a cache line.
    DmaPtr buf(dma_zmalloc(10, 0));
    ASSERT_NE(buf, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.get()) % 64, 0u);
}

TEST_F(EnvTest, DmaZmallocRejectsBadArguments) {
    EXPECT_EQ(dma_zmalloc(64, 3), nullptr);  // not a power of two
    EXPECT_EQ(dma_zmalloc(0, 64), nullptr);
    dma_free(nullptr);
}

TEST_F(EnvTest, VtophysOfNonDmaMemory) {
    int on_stack = 0;
    EXPECT_EQ(vtophys(&on_stack), UINT64_MAX);
    std::vector<char> on_heap(4096);
    EXPECT_EQ(vtophys(on_heap.data()), UINT64_MAX);
    EXPECT_EQ(vtophys(nullptr), UINT64_MAX);
}

TEST_F(EnvTest, MempoolDrainAndRefill) {
    auto pool = Mempool::create("env_test_pool", 128, 256, 32);
    ASSERT_NE(pool, nullptr);
    EXPECT_EQ(pool->size(), 128u);
    EXPECT_EQ(pool->available(), 128u);

    // available() counts the per-core caches too, so a full drain sees every element.
    std::set<void *> got;
    while (void *e = pool->get()) {
        EXPECT_TRUE(got.insert(e).second) << "duplicate element";
        EXPECT_NE(vtophys(e), UINT64_MAX);
        ASSERT_LE(got.size(), 128u);
    }
    EXPECT_EQ(got.size(), 128u);
    EXPECT_EQ(pool->available(), 0u);
    EXPECT_EQ(pool->get(), nullptr);

    for (void *e : got) {
        pool->put(e);
    }
    pool->put(nullptr);
    EXPECT_EQ(pool->available(), 128u);
}

TEST_F(EnvTest, MempoolOnWorkerCore) {
    auto pool = Mempool::create("worker", 64, 64, 16);
    ASSERT_NE(pool, nullptr);
    std::atomic<int> taken{0};
    ASSERT_EQ(launch_pinned(1,
                            [&] {
                                std::vector<void *> v;
                                while (void *e = pool->get()) {
                                    v.push_back(e);
                                }
                                taken = static_cast<int>(v.size());
                                for (void *e : v) {
                                    pool->put(e);
                                }
                                return 0;
                            }),
              0);
    wait_all();
    EXPECT_EQ(taken.load(), 64);
    EXPECT_EQ(pool->available(), 64u);
}

TEST_F(EnvTest, MempoolNamesNeverCollide) {
    const std::string long_name(60, 'x');
    auto a = Mempool::create("same", 16, 64, 0);
    auto b = Mempool::create("same", 16, 64, 0);
    auto c = Mempool::create(long_name, 16, 64, 0);
    auto d = Mempool::create(long_name, 16, 64, 0);
    EXPECT_NE(a, nullptr);
    EXPECT_NE(b, nullptr);
    EXPECT_NE(c, nullptr);
    EXPECT_NE(d, nullptr);
}

TEST_F(EnvTest, MempoolClampsCacheAndRejectsEmpty) {
    auto big_cache = Mempool::create("cache", 128, 64, 100000);
    ASSERT_NE(big_cache, nullptr);
    EXPECT_EQ(big_cache->available(), 128u);
    EXPECT_EQ(Mempool::create("empty", 0, 64, 0), nullptr);
    EXPECT_EQ(Mempool::create("zero", 16, 0, 0), nullptr);
}

}  // namespace
}  // namespace flint::env
