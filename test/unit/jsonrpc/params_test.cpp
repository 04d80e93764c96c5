#include <gtest/gtest.h>

#include <functional>

#include "flint/jsonrpc/jsonrpc.h"
#include "rpc_test_util.h"

namespace flint::jsonrpc::test {
namespace {

// Runs f and returns the InvalidParams message it threw ("" if it did not throw).
std::string error_of(const std::function<void()> &f) {
    try {
        f();
    } catch (const Error &e) {
        EXPECT_EQ(e.code, kInvalidParams);
        return e.what();
    }
    return "";
}

TEST(ParamDecoder, NullParamsAreEmpty) {
    Json::Value null;
    ParamDecoder d(null);
    EXPECT_EQ(d.optional_string("name"), std::nullopt);
    EXPECT_EQ(d.optional_int("n", 0, 10), std::nullopt);
    EXPECT_EQ(d.optional_uint("u"), std::nullopt);
    EXPECT_EQ(d.optional_bool("b"), std::nullopt);
    EXPECT_EQ(d.optional_value("v"), nullptr);
    EXPECT_EQ(error_of([&] { d.required_string("name"); }), "Missing required parameter 'name'");
    EXPECT_NO_THROW(d.finish());
}

TEST(ParamDecoder, NonObjectParamsRejected) {
    for (const char *text : {"[]", "[1,2]", "\"x\"", "1", "true", "1.5"}) {
        Json::Value v = parse(text);
        EXPECT_EQ(error_of([&] { ParamDecoder d(v); }), "Invalid parameters: expected an object")
            << text;
    }
}

TEST(ParamDecoder, Strings) {
    Json::Value v = parse(R"({"name":"Malloc0","empty":"","num":1,"nul":null})");
    ParamDecoder d(v);
    EXPECT_EQ(d.required_string("name"), "Malloc0");
    EXPECT_EQ(d.optional_string("empty"), std::optional<std::string>(""));
    EXPECT_EQ(d.optional_string("absent"), std::nullopt);
    EXPECT_EQ(error_of([&] { d.required_string("num"); }),
              "Invalid parameter 'num': expected string");
    EXPECT_EQ(error_of([&] { d.optional_string("nul"); }),
              "Invalid parameter 'nul': expected string");
    EXPECT_EQ(error_of([&] { d.required_string("missing"); }),
              "Missing required parameter 'missing'");
    EXPECT_NO_THROW(d.finish());
}

TEST(ParamDecoder, StringKeepsEmbeddedNul) {
    Json::Value v = parse(R"({"s":"a\u0000b"})");
    ParamDecoder d(v);
    EXPECT_EQ(d.required_string("s"), std::string("a\0b", 3));
}

TEST(ParamDecoder, UnsignedIntegers) {
    Json::Value v = parse(R"({"a":0,"b":1024,"c":1025,"max":18446744073709551615,"neg":-1,
        "real":1.5,"whole_real":1.0,"exp":1e3,"str":"1","bool":true,"huge":1e30,
        "bigint":123456789012345678901234567890})");
    ParamDecoder d(v);
    EXPECT_EQ(d.required_uint("a"), 0u);
    EXPECT_EQ(d.required_uint("b", 1024), 1024u);
    EXPECT_EQ(d.optional_uint("max"), UINT64_MAX);
    EXPECT_EQ(d.optional_uint("absent", 5), std::nullopt);
    EXPECT_EQ(error_of([&] { d.required_uint("c", 1024); }),
              "Invalid parameter 'c': expected unsigned integer <= 1024");
    EXPECT_EQ(error_of([&] { d.required_uint("neg"); }),
              "Invalid parameter 'neg': expected unsigned integer");
    for (const char *name : {"real", "whole_real", "exp", "str", "bool", "huge", "bigint"}) {
        EXPECT_EQ(
            error_of([&] { d.required_uint(name, 1u << 20); }),
            std::string("Invalid parameter '") + name + "': expected unsigned integer <= 1048576");
        EXPECT_EQ(error_of([&] { d.optional_uint(name); }),
                  std::string("Invalid parameter '") + name + "': expected unsigned integer");
    }
    EXPECT_EQ(error_of([&] { d.required_uint("missing"); }),
              "Missing required parameter 'missing'");
}

TEST(ParamDecoder, SignedIntegers) {
    Json::Value v = parse(R"({"zero":0,"neg":-5,"lo":-9223372036854775808,
        "hi":9223372036854775807,"over":9223372036854775808,"real":-1.5,"str":"-1"})");
    ParamDecoder d(v);
    EXPECT_EQ(d.required_int("zero", -1, 1), 0);
    EXPECT_EQ(d.required_int("neg", -5, 5), -5);
    EXPECT_EQ(d.required_int("lo", INT64_MIN, INT64_MAX), INT64_MIN);
    EXPECT_EQ(d.optional_int("hi", INT64_MIN, INT64_MAX), INT64_MAX);
    EXPECT_EQ(d.optional_int("absent", 0, 1), std::nullopt);
    EXPECT_EQ(error_of([&] { d.required_int("neg", -4, 4); }),
              "Invalid parameter 'neg': expected integer between -4 and 4");
    EXPECT_EQ(error_of([&] { d.required_int("neg", 0, INT64_MAX); }),
              "Invalid parameter 'neg': expected integer >= 0");
    EXPECT_EQ(error_of([&] { d.required_int("zero", INT64_MIN, -1); }),
              "Invalid parameter 'zero': expected integer <= -1");
    EXPECT_EQ(error_of([&] { d.required_int("over", INT64_MIN, INT64_MAX); }),
              "Invalid parameter 'over': expected integer");
    EXPECT_EQ(error_of([&] { d.optional_int("real", -10, 10); }),
              "Invalid parameter 'real': expected integer between -10 and 10");
    EXPECT_EQ(error_of([&] { d.required_int("str", -10, 10); }),
              "Invalid parameter 'str': expected integer between -10 and 10");
    EXPECT_EQ(error_of([&] { d.required_int("missing", 0, 1); }),
              "Missing required parameter 'missing'");
}

TEST(ParamDecoder, Booleans) {
    Json::Value v = parse(R"({"t":true,"f":false,"one":1,"str":"true"})");
    ParamDecoder d(v);
    EXPECT_TRUE(d.required_bool("t"));
    EXPECT_EQ(d.optional_bool("f"), std::optional<bool>(false));
    EXPECT_EQ(d.optional_bool("absent"), std::nullopt);
    EXPECT_EQ(error_of([&] { d.required_bool("one"); }),
              "Invalid parameter 'one': expected boolean");
    EXPECT_EQ(error_of([&] { d.optional_bool("str"); }),
              "Invalid parameter 'str': expected boolean");
    EXPECT_EQ(error_of([&] { d.required_bool("missing"); }),
              "Missing required parameter 'missing'");
}

TEST(ParamDecoder, UnknownFieldsAndRawValues) {
    Json::Value v = parse(R"({"name":"x","nested":{"a":[1,2]},"foo":1})");
    ParamDecoder d(v);
    EXPECT_EQ(d.required_string("name"), "x");
    const Json::Value *nested = d.optional_value("nested");
    ASSERT_NE(nested, nullptr);
    EXPECT_EQ((*nested)["a"][1], 2);
    EXPECT_EQ(error_of([&] { d.finish(); }), "Unknown parameter 'foo'");
    // Asking for a field, even an optional one that turned out bad, makes it known.
    EXPECT_NE(error_of([&] { d.optional_bool("foo"); }), "");
    EXPECT_NO_THROW(d.finish());
}

}  // namespace
}  // namespace flint::jsonrpc::test
