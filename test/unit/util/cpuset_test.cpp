#include "flint/util/cpuset.h"

#include <gtest/gtest.h>

using flint::util::CpuSet;

TEST(CpuSet, ParsesEveryForm) {
    for (const char *text : {"0x3", "3", "0X3", "[0,1]", "0-1", "[0-1]", "0,1", " 0x3 "}) {
        CpuSet s;
        std::string err;
        ASSERT_TRUE(s.parse(text, &err)) << text << ": " << err;
        EXPECT_EQ((std::vector<uint32_t>{0, 1}), s.cores()) << text;
        EXPECT_EQ("0x3", s.to_hex());
        EXPECT_EQ("[0,1]", s.to_list());
    }
    CpuSet big;
    std::string err;
    ASSERT_TRUE(big.parse("[1,4-6,1023]", &err)) << err;
    EXPECT_EQ((std::vector<uint32_t>{1, 4, 5, 6, 1023}), big.cores());
    EXPECT_EQ(1u, big.first());
    ASSERT_TRUE(big.parse("0xF0", &err));
    EXPECT_EQ("0xf0", big.to_hex());
    EXPECT_EQ(4u, big.first());
}

TEST(CpuSet, RejectsBadInput) {
    for (const char *text :
         {"", "0x", "0xZ", "[0,1", "[a]", "3-1", "[0-1024]", "0x0", "[]", "1,,2", "-1"}) {
        CpuSet s;
        s.set(7);
        std::string err;
        EXPECT_FALSE(s.parse(text, &err)) << text;
        EXPECT_FALSE(err.empty()) << text;
        EXPECT_TRUE(s.contains(7)) << "a failed parse must not change the set";
    }
    CpuSet s;
    std::string err;
    EXPECT_FALSE(s.parse("0x" + std::string(300, 'f'), &err));  // more than 1024 cores
}
