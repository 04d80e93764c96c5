#pragma once
// A GoogleTest environment that initialises DPDK's EAL once for a test binary (one core,
// no hugepages), for tests that need DMA memory. Use: FLINT_TEST_EAL_ENV("name");

#include <gtest/gtest.h>

#include <string>

#include "flint/env/env.h"

namespace flint::test {

class EalEnv : public ::testing::Environment {
public:
    explicit EalEnv(const char *name) : name_(name) {}
    void SetUp() override {
        env::Options o;
        o.name = name_;
        o.core_mask = "0x1";
        o.no_huge = true;
        std::string err;
        ASSERT_EQ(0, env::init(o, &err)) << err;
    }
    void TearDown() override { env::fini(); }

private:
    const char *name_;
};

}  // namespace flint::test

#define FLINT_TEST_EAL_ENV(name)                         \
    [[maybe_unused]] static auto *g_flint_test_eal_env = \
        ::testing::AddGlobalTestEnvironment(new ::flint::test::EalEnv(name))
