#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "flint/jsonrpc/jsonrpc.h"
#include "rpc_test_util.h"

namespace flint::jsonrpc::test {
namespace {

using testing::internal::CaptureStderr;
using testing::internal::GetCapturedStderr;

// Records every response a request produces.
struct Sink {
    std::vector<Json::Value> responses;
    Request::Completion completion() {
        return [this](const Json::Value &r) { responses.push_back(r); };
    }
};

RequestPtr make(Sink &sink, const std::string &method, Json::Value params = {},
                Json::Value id = 1) {
    return std::make_shared<Request>(method, std::move(params), std::move(id), sink.completion());
}

size_t count(const std::string &haystack, const std::string &needle) {
    size_t n = 0;
    for (size_t pos = haystack.find(needle); pos != std::string::npos;
         pos = haystack.find(needle, pos + 1)) {
        ++n;
    }
    return n;
}

TEST(Request, ResultAndErrorShape) {
    Sink sink;
    Request("m", {}, "abc", sink.completion()).result(parse(R"({"a":[1,"x"]})"));
    Request("m", {}, 7, sink.completion()).error(-32000, "went wrong");
    ASSERT_EQ(sink.responses.size(), 2u);
    EXPECT_EQ(sink.responses[0], parse(R"({"jsonrpc":"2.0","id":"abc","result":{"a":[1,"x"]}})"));
    EXPECT_EQ(sink.responses[1],
              parse(R"({"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"went wrong"}})"));
    EXPECT_EQ(to_string(sink.responses[0]),
              R"({"id":"abc","jsonrpc":"2.0","result":{"a":[1,"x"]}})");
}

TEST(Request, NullIdIsNotANotification) {
    Sink sink;
    Request r("m", {}, Json::Value(), sink.completion());
    EXPECT_FALSE(r.is_notification());
    r.result(true);
    ASSERT_EQ(sink.responses.size(), 1u);
    EXPECT_TRUE(sink.responses[0]["id"].isNull());
    EXPECT_TRUE(sink.responses[0].isMember("id"));
}

TEST(Request, NotificationNeverCallsCompletion) {
    Sink sink;
    {
        Request r("m", {}, Json::Value(), sink.completion());
        r.set_has_id(false);
        EXPECT_TRUE(r.is_notification());
        r.result(1);
        EXPECT_TRUE(r.responded());
    }
    {
        Request r("m", {}, Json::Value(), sink.completion());
        r.set_has_id(false);  // destroyed without a response: still silent
    }
    EXPECT_TRUE(sink.responses.empty());
}

TEST(Request, SecondResponseIgnoredAndLogged) {
    Sink sink;
    CaptureStderr();
    {
        Request r("twice", {}, 1, sink.completion());
        r.result(1);
        r.error(kInternalError, "again");
        r.result(2);
    }
    std::string log = GetCapturedStderr();
    ASSERT_EQ(sink.responses.size(), 1u);
    EXPECT_EQ(sink.responses[0]["result"], 1);
    EXPECT_EQ(count(log, "twice responded twice"), 2u) << log;
}

TEST(Request, DestroyedWithoutResponseAnswersInternalError) {
    Sink sink;
    CaptureStderr();
    { Request r("forgetful", {}, 3, sink.completion()); }
    std::string log = GetCapturedStderr();
    ASSERT_EQ(sink.responses.size(), 1u);
    EXPECT_EQ(sink.responses[0]["id"], 3);
    EXPECT_EQ(sink.responses[0]["error"]["code"], kInternalError);
    EXPECT_EQ(sink.responses[0]["error"]["message"], "method did not respond");
    EXPECT_NE(log.find("forgetful did not respond"), std::string::npos) << log;
}

TEST(Request, ThrowingCompletionIsContained) {
    Request r("m", {}, 1, [](const Json::Value &) { throw std::runtime_error("sink broke"); });
    CaptureStderr();
    EXPECT_NO_THROW(r.result(1));
    EXPECT_NE(GetCapturedStderr().find("sink broke"), std::string::npos);
}

class RegistryTest : public ::testing::Test {
protected:
    void SetUp() override {
        reg.add(
            "echo", [](const RequestPtr &r) { r->result(r->params()); }, kStartup | kRuntime);
        reg.add(
            "runtime_only", [](const RequestPtr &r) { r->result(true); }, kRuntime);
        reg.add(
            "startup_only", [](const RequestPtr &r) { r->result(true); }, kStartup);
        reg.add(
            "throws_error", [](const RequestPtr &) { throw Error(-32000, "custom failure"); },
            kStartup | kRuntime);
        reg.add(
            "throws_std", [](const RequestPtr &) { throw std::runtime_error("boom"); },
            kStartup | kRuntime);
        reg.add(
            "throws_int", [](const RequestPtr &) { throw 42; }, kStartup | kRuntime);
        reg.add(
            "throws_after_result",
            [](const RequestPtr &r) {
                r->result("ok");
                throw Error(kInvalidParams, "late");
            },
            kStartup | kRuntime);
        reg.add(
            "decode",
            [](const RequestPtr &r) {
                ParamDecoder d(r->params());
                auto n = d.required_uint("num_blocks", 1024);
                d.finish();
                r->result(Json::UInt64(n));
            },
            kStartup | kRuntime);
        reg.add(
            "forget", [](const RequestPtr &) {}, kStartup | kRuntime);
        reg.add_alias("old_echo", "echo");
        reg.add_alias("old_runtime_only", "runtime_only");
    }

    Json::Value call(const std::string &method, Json::Value params = {}) {
        Sink sink;
        reg.dispatch(make(sink, method, std::move(params)));
        EXPECT_EQ(sink.responses.size(), 1u) << method;
        return sink.responses.empty() ? Json::Value() : sink.responses[0];
    }

    Registry reg;
};

TEST_F(RegistryTest, Dispatches) {
    Json::Value r = call("echo", parse(R"({"x":1})"));
    EXPECT_EQ(r["result"], parse(R"({"x":1})"));
    EXPECT_EQ(r["id"], 1);
}

TEST_F(RegistryTest, MethodNotFound) {
    Json::Value r = call("nope");
    EXPECT_EQ(r["error"]["code"], kMethodNotFound);
    EXPECT_EQ(r["error"]["message"], "Method not found");
    EXPECT_EQ(call("")["error"]["code"], kMethodNotFound);
}

TEST_F(RegistryTest, StateChecksUseSpdkMessages) {
    EXPECT_EQ(reg.state(), kStartup);
    Json::Value r = call("runtime_only");
    EXPECT_EQ(r["error"]["code"], kInvalidState);
    EXPECT_EQ(r["error"]["message"],
              "Method may only be called after framework is initialized using "
              "framework_start_init RPC.");
    EXPECT_TRUE(call("startup_only")["result"].asBool());

    reg.set_state(kRuntime);
    r = call("startup_only");
    EXPECT_EQ(r["error"]["code"], kInvalidState);
    EXPECT_EQ(r["error"]["message"],
              "Method may only be called before framework is initialized. Use --wait-for-rpc "
              "command line parameter and then issue this RPC before the framework_start_init "
              "RPC.");
    EXPECT_TRUE(call("runtime_only")["result"].asBool());
    EXPECT_TRUE(call("old_runtime_only")["result"].asBool());
}

TEST_F(RegistryTest, HandlerExceptionsBecomeErrors) {
    Json::Value r = call("throws_error");
    EXPECT_EQ(r["error"]["code"], -32000);
    EXPECT_EQ(r["error"]["message"], "custom failure");
    r = call("throws_std");
    EXPECT_EQ(r["error"]["code"], kInternalError);
    EXPECT_EQ(r["error"]["message"], "boom");
    r = call("throws_int");
    EXPECT_EQ(r["error"]["code"], kInternalError);
    CaptureStderr();
    r = call("throws_after_result");  // exactly one response: the result
    EXPECT_NE(GetCapturedStderr().find("failed after responding: late"), std::string::npos);
    EXPECT_EQ(r["result"], "ok");
}

TEST_F(RegistryTest, ParamDecoderErrors) {
    EXPECT_EQ(call("decode", parse(R"({"num_blocks":8})"))["result"].asUInt64(), 8u);
    Json::Value r = call("decode", parse(R"({"num_blocks":2048})"));
    EXPECT_EQ(r["error"]["code"], kInvalidParams);
    EXPECT_EQ(r["error"]["message"],
              "Invalid parameter 'num_blocks': expected unsigned integer <= 1024");
    r = call("decode");
    EXPECT_EQ(r["error"]["message"], "Missing required parameter 'num_blocks'");
    r = call("decode", parse(R"({"num_blocks":1,"foo":2})"));
    EXPECT_EQ(r["error"]["message"], "Unknown parameter 'foo'");
    r = call("decode", parse("[1]"));
    EXPECT_EQ(r["error"]["message"], "Invalid parameters: expected an object");
}

TEST_F(RegistryTest, ForgottenRequestGetsInternalError) {
    CaptureStderr();
    Json::Value r = call("forget");
    GetCapturedStderr();
    EXPECT_EQ(r["error"]["code"], kInternalError);
    EXPECT_EQ(r["error"]["message"], "method did not respond");
}

TEST_F(RegistryTest, AliasWarnsOnceAndRunsTarget) {
    CaptureStderr();
    EXPECT_EQ(call("old_echo", parse("{\"a\":1}"))["result"]["a"], 1);
    EXPECT_EQ(call("old_echo")["result"], Json::Value());
    std::string log = GetCapturedStderr();
    EXPECT_EQ(count(log, "RPC method old_echo is deprecated. Use echo instead."), 1u) << log;
}

TEST_F(RegistryTest, NamesAndStates) {
    EXPECT_TRUE(reg.has("echo"));
    EXPECT_TRUE(reg.has("old_echo"));
    EXPECT_FALSE(reg.has("nope"));
    EXPECT_EQ(reg.states_of("runtime_only"), uint32_t(kRuntime));
    EXPECT_EQ(reg.states_of("old_runtime_only"), uint32_t(kRuntime));
    EXPECT_EQ(reg.states_of("nope"), 0u);

    std::vector<std::string> all = {"decode",       "echo",         "forget",
                                    "runtime_only", "startup_only", "throws_after_result",
                                    "throws_error", "throws_int",   "throws_std"};
    EXPECT_EQ(reg.names(false, false), all);
    std::vector<std::string> with_aliases = {
        "decode",           "echo",         "forget",       "old_echo",
        "old_runtime_only", "runtime_only", "startup_only", "throws_after_result",
        "throws_error",     "throws_int",   "throws_std"};
    EXPECT_EQ(reg.names(false, true), with_aliases);

    auto current = reg.names(true, true);
    EXPECT_EQ(std::count(current.begin(), current.end(), "runtime_only"), 0);
    EXPECT_EQ(std::count(current.begin(), current.end(), "old_runtime_only"), 0);
    EXPECT_EQ(std::count(current.begin(), current.end(), "startup_only"), 1);
    reg.set_state(kRuntime);
    current = reg.names(true, false);
    EXPECT_EQ(std::count(current.begin(), current.end(), "runtime_only"), 1);
    EXPECT_EQ(std::count(current.begin(), current.end(), "startup_only"), 0);
    EXPECT_TRUE(std::is_sorted(current.begin(), current.end()));
}

TEST_F(RegistryTest, BadRegistrationsThrow) {
    auto h = [](const RequestPtr &r) { r->result(1); };
    EXPECT_THROW(reg.add("echo", h, kStartup), std::logic_error);
    EXPECT_THROW(reg.add("old_echo", h, kStartup), std::logic_error);
    EXPECT_THROW(reg.add("", h, kStartup), std::logic_error);
    EXPECT_THROW(reg.add("x", nullptr, kStartup), std::logic_error);
    EXPECT_THROW(reg.add("x", h, 0), std::logic_error);
    EXPECT_THROW(reg.add_alias("echo", "decode"), std::logic_error);
    EXPECT_THROW(reg.add_alias("new_alias", "nope"), std::logic_error);
    EXPECT_THROW(reg.add_alias("alias_of_alias", "old_echo"), std::logic_error);
    EXPECT_FALSE(reg.has("new_alias"));
}

TEST_F(RegistryTest, NullRequestIgnored) {
    EXPECT_NO_FATAL_FAILURE(reg.dispatch(nullptr));
}

}  // namespace
}  // namespace flint::jsonrpc::test
