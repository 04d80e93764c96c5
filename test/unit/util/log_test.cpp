#include "flint/util/log.h"

#include <gtest/gtest.h>

FLINT_LOG_FLAG(unit_test_flag);

TEST(Log, LevelsParseAndFilter) {
    using flint::log::Level;
    EXPECT_EQ(Level::Debug, flint::log::parse_level("debug"));
    EXPECT_EQ(Level::Warn, flint::log::parse_level("WARNING"));
    EXPECT_EQ(Level::Disabled, flint::log::parse_level("DISABLED"));
    EXPECT_FALSE(flint::log::parse_level("LOUD"));
    EXPECT_STREQ("NOTICE", flint::log::level_name(Level::Notice));

    flint::log::set_level(Level::Error);
    testing::internal::CaptureStderr();
    FLINT_WARNLOG("hidden %d", 1);
    FLINT_ERRLOG("shown %d", 2);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(std::string::npos, out.find("hidden"));
    EXPECT_NE(std::string::npos, out.find("*ERROR*: shown 2\n"));
    flint::log::set_level(Level::Notice);
}

TEST(Log, FlagsToggleDebugOutput) {
    auto flags = flint::log::flags();
    ASSERT_TRUE(flags.count("unit_test_flag"));
    EXPECT_FALSE(flags["unit_test_flag"]);
    testing::internal::CaptureStderr();
    FLINT_DEBUGLOG(unit_test_flag, "off");
    EXPECT_TRUE(flint::log::set_flag("unit_test_flag", true));
    FLINT_DEBUGLOG(unit_test_flag, "on");
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(std::string::npos, out.find("off"));
    EXPECT_NE(std::string::npos, out.find("[unit_test_flag]: on"));
    EXPECT_FALSE(flint::log::set_flag("no_such_flag", true));
    EXPECT_TRUE(flint::log::set_flag("all", false));
    EXPECT_FALSE(flint::log::flags()["unit_test_flag"]);
}
