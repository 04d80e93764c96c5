#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "flint/jsonrpc/server.h"

namespace flint::jsonrpc::test {
namespace {

using detail::FrameScanner;
using Result = FrameScanner::Result;

// Splits a whole buffer into values the way the server does; stops at the first invalid byte.
struct Split {
    std::vector<std::string> values;
    std::string rest;
    bool invalid = false;
};

Split split(std::string data) {
    Split s;
    FrameScanner scanner;
    for (;;) {
        size_t end = 0;
        Result r = scanner.scan(data, &end);
        if (r == Result::kComplete) {
            s.values.push_back(data.substr(0, end));
            data.erase(0, end);
            continue;
        }
        s.invalid = r == Result::kInvalid;
        s.rest = data;
        return s;
    }
}

TEST(FrameScanner, SingleValues) {
    for (const char *v : {"{}", "[]", R"({"a":1})", R"([{"a":[1,{"b":[]}]}])", R"({"a":"x"})"}) {
        Split s = split(v);
        ASSERT_EQ(s.values.size(), 1u) << v;
        EXPECT_EQ(s.values[0], v);
        EXPECT_EQ(s.rest, "");
        EXPECT_FALSE(s.invalid);
    }
}

TEST(FrameScanner, LeadingWhitespaceBelongsToTheValue) {
    Split s = split(" \r\n\t{\"a\":1}\n");
    ASSERT_EQ(s.values.size(), 1u);
    EXPECT_EQ(s.values[0], " \r\n\t{\"a\":1}");
    EXPECT_EQ(s.rest, "\n");
    EXPECT_FALSE(s.invalid);
}

TEST(FrameScanner, PipelinedValues) {
    Split s = split(R"({"a":1}{"b":2}  [3]
{"c":{}})");
    ASSERT_EQ(s.values.size(), 4u);
    EXPECT_EQ(s.values[0], R"({"a":1})");
    EXPECT_EQ(s.values[1], R"({"b":2})");
    EXPECT_EQ(s.values[2], "  [3]");
    EXPECT_EQ(s.values[3], "\n{\"c\":{}}");
}

TEST(FrameScanner, BracketsAndEscapesInsideStrings) {
    const std::string tricky[] = {
        R"({"a":"}{]["})",   R"({"a":"\"}"})",         R"({"a":"\\"})",
        R"({"a":"\\\"}{"})", R"({"}":"{","[":["]"]})", R"({"a":"\u007d"})",
    };
    for (const auto &v : tricky) {
        Split s = split(v + "{}");
        ASSERT_EQ(s.values.size(), 2u) << v;
        EXPECT_EQ(s.values[0], v);
        EXPECT_EQ(s.values[1], "{}");
    }
}

TEST(FrameScanner, IncompleteNeedsMore) {
    for (const char *v : {"", "   \n", "{", "{\"a\":", "[[[]]", "{\"a\":\"}", "{\"a\":\"\\"}) {
        Split s = split(v);
        EXPECT_TRUE(s.values.empty()) << v;
        EXPECT_FALSE(s.invalid) << v;
        EXPECT_EQ(s.rest, v);
    }
}

TEST(FrameScanner, InvalidFirstByte) {
    const std::string inputs[] = {
        "x", "1", "\"a\"", "null", "}", "]", std::string("\0{}", 3), "\xef\xbb\xbf{}"};
    for (const auto &v : inputs) {
        Split s = split(v);
        EXPECT_TRUE(s.values.empty());
        EXPECT_TRUE(s.invalid) << v;
    }
    Split s = split(R"({"a":1}} )");  // a stray closer after a good value
    ASSERT_EQ(s.values.size(), 1u);
    EXPECT_TRUE(s.invalid);
}

TEST(FrameScanner, MismatchedClosersEndTheValueForTheParserToReject) {
    Split s = split("{]{}");
    ASSERT_EQ(s.values.size(), 2u);
    EXPECT_EQ(s.values[0], "{]");
}

TEST(FrameScanner, ResumesAcrossEveryPossibleSplit) {
    const std::string text = R"( {"m":"a\"}\\","p":[1,{"x":"]"}]}[{"n":2}])";
    const std::string first = R"( {"m":"a\"}\\","p":[1,{"x":"]"}]})";
    for (size_t cut = 0; cut <= text.size(); ++cut) {
        FrameScanner scanner;
        std::string buf = text.substr(0, cut);
        size_t end = 0;
        Result r = scanner.scan(buf, &end);
        if (cut < first.size()) {
            ASSERT_EQ(r, Result::kNeedMore) << cut;
            buf = text;
            r = scanner.scan(buf, &end);
        }
        ASSERT_EQ(r, Result::kComplete) << cut;
        EXPECT_EQ(end, first.size()) << cut;
    }
}

TEST(FrameScanner, ByteAtATime) {
    const std::string text = R"({"jsonrpc":"2.0","method":"x\\","id":"}"}{"a":[]})";
    FrameScanner scanner;
    std::string buf;
    std::vector<std::string> values;
    for (char c : text) {
        buf.push_back(c);
        size_t end = 0;
        if (scanner.scan(buf, &end) == Result::kComplete) {
            values.push_back(buf.substr(0, end));
            buf.erase(0, end);
        }
    }
    ASSERT_EQ(values.size(), 2u);
    EXPECT_EQ(values[1], R"({"a":[]})");
    EXPECT_TRUE(buf.empty());
}

TEST(FrameScanner, DeepNestingIsJustCounted) {
    std::string deep = std::string(100000, '[') + std::string(100000, ']');
    Split s = split(deep);
    ASSERT_EQ(s.values.size(), 1u);
    EXPECT_EQ(s.values[0].size(), deep.size());
}

}  // namespace
}  // namespace flint::jsonrpc::test
