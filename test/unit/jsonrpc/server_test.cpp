// Protocol behaviour of the server: framing, envelope validation, errors, async and batches.

#include <gtest/gtest.h>

#include <random>

#include "rpc_test_util.h"

namespace flint::jsonrpc::test {
namespace {

using ServerTest = RpcServerTest;

TEST_F(ServerTest, EchoRoundTrip) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("echo", "1", R"({"a":[1,2,{"b":null}]})")));
    expect_result(c.read(*server), 1, parse(R"({"a":[1,2,{"b":null}]})"));
    ASSERT_TRUE(c.send(*server, request("echo", "\"str-id\"", "[1,2]")));
    expect_result(c.read(*server), "str-id", parse("[1,2]"));
    ASSERT_TRUE(c.send(*server, request("echo", "null")));  // null id: still answered
    auto r = c.read(*server);
    expect_result(r, Json::Value(), Json::Value());
    EXPECT_TRUE(r->isMember("id"));
    ASSERT_TRUE(c.send(*server, request("add", "2.5", R"({"a":2,"b":3})")));
    expect_result(c.read(*server), 2.5, 5);
    EXPECT_EQ(server->connection_count(), 1u);
}

TEST_F(ServerTest, ResponsesAreCompactLines) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("echo", "1", R"({"s":"line1\nline2"})")));
    ASSERT_TRUE(c.read(*server).has_value());  // read() parses up to the first '\n'
    EXPECT_TRUE(c.buffered().empty());
}

TEST_F(ServerTest, NotificationGetsNoResponse) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("notify", "")));
    ASSERT_TRUE(pump_until(*server, [&] { return notified == 1; }));
    // Errors for notifications are not sent either.
    ASSERT_TRUE(c.send(*server, request("nope", "") + request("throws_std", "") +
                                    request("forget", "") + request("echo", "7")));
    expect_result(c.read(*server), 7, Json::Value());  // the first thing to arrive
}

TEST_F(ServerTest, ParseErrorsAnswerAndClose) {
    const std::string inputs[] = {
        "hello",
        std::string("\0\0\0", 3),
        std::string("\0{}", 3),
        "123",
        "\"str\"",
        "null",
        "}",
        R"({"a":})",
        R"({"a":tru})",
        R"({"a":1,"a":2})",
        R"({"a":1,})",
        R"({'a':1})",
        R"({"a":NaN})",
        R"({"a":"\ud800"})",
        std::string("{\xff\xfe\x00}", 5),
        std::string("{\"a\":\"x\"\x00}", 10),
        std::string(10000, '[') + std::string(10000, ']'),
        std::string(100, '[') + std::string(100, ']'),
        "[1,]",
        "{]",
    };
    for (const auto &in : inputs) {
        SCOPED_TRACE(testing::PrintToString(in.substr(0, 40)));
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, in));
        expect_error(c.read(*server), Json::Value(), kParseError, "Parse error");
        EXPECT_TRUE(c.wait_closed(*server));
    }
    EXPECT_TRUE(pump_until(*server, [&] { return server->connection_count() == 0; }));
    expect_result(call(request("echo", "1")), 1, Json::Value());
}

TEST_F(ServerTest, NestingUpToTheLimitParses) {
    std::string deep = std::string(40, '[') + std::string(40, ']');
    expect_result(call(request("echo", "1", "{\"d\":" + deep + "}")), 1,
                  parse("{\"d\":" + deep + "}"));
}

TEST_F(ServerTest, GoodRequestThenGarbage) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("echo", "1") + " garbage " + request("echo", "2")));
    expect_result(c.read(*server), 1, Json::Value());
    expect_error(c.read(*server), Json::Value(), kParseError, "Parse error");
    EXPECT_TRUE(c.wait_closed(*server));
}

TEST_F(ServerTest, InvalidRequests) {
    struct Case {
        std::string text;
        Json::Value id;
    };
    const Case cases[] = {
        {R"({"method":"echo","id":1})", 1},                    // no jsonrpc
        {R"({"jsonrpc":"1.0","method":"echo","id":2})", 2},    // wrong version
        {R"({"jsonrpc":2.0,"method":"echo","id":3})", 3},      // version not a string
        {R"({"jsonrpc":"2.0","method":5,"id":4})", 4},         // method not a string
        {R"({"jsonrpc":"2.0","method":null,"id":"5"})", "5"},  // method null
        {R"({"jsonrpc":"2.0","id":6})", 6},                    // no method
        {R"({"jsonrpc":"2.0","method":"echo","params":"x","id":7})", 7},
        {R"({"jsonrpc":"2.0","method":"echo","params":3,"id":8})", 8},
        {R"({"jsonrpc":"2.0","method":"echo","params":null,"id":9})", 9},
        {R"({"jsonrpc":"2.0","method":"echo","id":{"a":1}})", Json::Value()},  // id object
        {R"({"jsonrpc":"2.0","method":"echo","id":[1]})", Json::Value()},      // id array
        {R"({"jsonrpc":"2.0","method":"echo","id":true})", Json::Value()},     // id bool
        {R"({"jsonrpc":"2.0","method":5})", Json::Value()},  // invalid, no id: still answered
        {R"({})", Json::Value()},
        {R"([])", Json::Value()},  // empty batch: one error object, not an array
    };
    Client c(dir.path());
    std::string all;
    for (const auto &k : cases) {
        all += k.text + "\n";
    }
    ASSERT_TRUE(c.send(*server, all));
    for (const auto &k : cases) {
        SCOPED_TRACE(k.text);
        expect_error(c.read(*server), k.id, kInvalidRequest, "Invalid request");
    }
    // The connection stays usable.
    ASSERT_TRUE(c.send(*server, request("echo", "99")));
    expect_result(c.read(*server), 99, Json::Value());
}

TEST_F(ServerTest, MethodNotFound) {
    expect_error(call(request("nope", "1")), 1, kMethodNotFound, "Method not found");
    // Invalid UTF-8 and control bytes still give valid JSON back (bad bytes become U+FFFD).
    expect_error(call("{\"jsonrpc\":\"2.0\",\"method\":\"\xff\xfe\x01\\u0000x\",\"id\":\"\xc3\"}"),
                 "\xef\xbf\xbd", kMethodNotFound, "Method not found");
}

TEST_F(ServerTest, InvalidParams) {
    expect_error(call(request("add", "1", R"({"b":1})")), 1, kInvalidParams,
                 "Missing required parameter 'a'");
    expect_error(call(request("add", "2", R"({"a":"1"})")), 2, kInvalidParams,
                 "Invalid parameter 'a': expected integer between -1000 and 1000");
    expect_error(call(request("add", "3", R"({"a":1.5})")), 3, kInvalidParams,
                 "Invalid parameter 'a': expected integer between -1000 and 1000");
    expect_error(call(request("add", "4", R"({"a":1001})")), 4, kInvalidParams,
                 "Invalid parameter 'a': expected integer between -1000 and 1000");
    expect_error(call(request("add", "5", R"({"a":true})")), 5, kInvalidParams,
                 "Invalid parameter 'a': expected integer between -1000 and 1000");
    expect_error(call(request("add", "6", R"({"a":1,"foo":2})")), 6, kInvalidParams,
                 "Unknown parameter 'foo'");
    expect_error(call(request("add", "7", "[1,2]")), 7, kInvalidParams,
                 "Invalid parameters: expected an object");
    expect_error(call(request("big", "8", R"({"size":-1})")), 8, kInvalidParams,
                 "Invalid parameter 'size': expected unsigned integer <= 67108864");
}

TEST_F(ServerTest, InvalidStateBothWays) {
    expect_error(call(request("runtime_only", "1")), 1, kInvalidState,
                 "Method may only be called after framework is initialized using "
                 "framework_start_init RPC.");
    expect_result(call(request("startup_only", "2")), 2, true);
    reg.set_state(kRuntime);
    expect_error(call(request("startup_only", "3")), 3, kInvalidState,
                 "Method may only be called before framework is initialized. Use "
                 "--wait-for-rpc command line parameter and then issue this RPC before the "
                 "framework_start_init RPC.");
    expect_result(call(request("runtime_only", "4")), 4, true);
}

TEST_F(ServerTest, AliasRunsTargetAndIsListedOnlyWithAliases) {
    testing::internal::CaptureStderr();
    expect_result(call(request("old_echo", "1", R"({"x":1})")), 1, parse(R"({"x":1})"));
    expect_result(call(request("old_echo", "2")), 2, Json::Value());
    std::string log = testing::internal::GetCapturedStderr();
    EXPECT_NE(log.find("RPC method old_echo is deprecated. Use echo instead."), std::string::npos);
    EXPECT_EQ(log.find("deprecated"), log.rfind("deprecated")) << "warned twice: " << log;
    auto plain = reg.names(false, false);
    auto with = reg.names(false, true);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), "old_echo"), 0);
    EXPECT_EQ(std::count(with.begin(), with.end(), "old_echo"), 1);
}

TEST_F(ServerTest, HandlerFailures) {
    expect_error(call(request("throws_error", "1")), 1, -32000, "custom failure");
    expect_error(call(request("throws_std", "2")), 2, kInternalError, "boom");
    testing::internal::CaptureStderr();
    expect_error(call(request("forget", "3")), 3, kInternalError, "method did not respond");
    EXPECT_NE(testing::internal::GetCapturedStderr().find("forget did not respond"),
              std::string::npos);
}

TEST_F(ServerTest, AsyncResponse) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("async", "1") + request("echo", "2")));
    // The synchronous answer overtakes the pending one.
    expect_result(c.read(*server), 2, Json::Value());
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_TRUE(c.quiet(*server));
    pending[0]->result("later");
    pending[0]->result("twice");  // ignored
    expect_result(c.read(*server), 1, "later");
    EXPECT_TRUE(c.quiet(*server));
    pending.clear();
}

TEST_F(ServerTest, AsyncResponseAfterClientDisconnected) {
    {
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, request("async", "1") + request("async", "2")));
        ASSERT_TRUE(pump_until(*server, [&] { return pending.size() == 2; }));
    }
    ASSERT_TRUE(pump_until(*server, [&] { return server->connection_count() == 0; }));
    pending[0]->result("nobody listens");
    pump_for(*server, 20ms);
    testing::internal::CaptureStderr();
    pending.clear();  // the second one was never answered: internal error, dropped too
    testing::internal::GetCapturedStderr();
    pump_for(*server, 20ms);
    expect_result(call(request("echo", "3")), 3, Json::Value());
}

TEST_F(ServerTest, AsyncResponseAfterServerDestroyed) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("async", "1") + "[" + request("async", "2") + "]"));
    ASSERT_TRUE(pump_until(*server, [&] { return pending.size() == 2; }));
    server.reset();
    pending[0]->result(1);
    pending[1]->error(kInternalError, "late");
    pending.clear();
    EXPECT_TRUE(c.eof_now());  // the destructor closed it
}

TEST_F(ServerTest, RequestOneByteAtATime) {
    Client c(dir.path());
    const std::string text =
        request("echo", "\"a\\\"}\"", R"({"s":"}{][\\\"","n":[1,{"x":[]}]})") + "\n";
    for (char ch : text) {
        ASSERT_TRUE(c.send(*server, std::string(1, ch)));
        server->poll();
    }
    expect_result(c.read(*server), "a\"}", parse(R"({"s":"}{][\\\"","n":[1,{"x":[]}]})"));
}

TEST_F(ServerTest, PipelinedRequestsInOneWrite) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("echo", "1") + request("echo", "2") + "\n\r\t " +
                                    request("notify", "") + request("echo", "3") + "\n"));
    expect_result(c.read(*server), 1, Json::Value());
    expect_result(c.read(*server), 2, Json::Value());
    expect_result(c.read(*server), 3, Json::Value());
    EXPECT_EQ(notified, 1);
    EXPECT_TRUE(c.quiet(*server));
}

TEST_F(ServerTest, ManyPipelinedRequestsSplitAcrossReads) {
    Client c(dir.path());
    std::string all;
    const int n = 2000;
    for (int i = 0; i < n; ++i) {
        all += request("add", std::to_string(i), "{\"a\":" + std::to_string(i % 1000) + "}");
    }
    ASSERT_TRUE(c.send(*server, all));
    for (int i = 0; i < n; ++i) {
        auto r = c.read(*server);
        ASSERT_TRUE(r.has_value()) << i;
        ASSERT_EQ((*r)["id"], i);
        ASSERT_EQ((*r)["result"], i % 1000);
    }
}

TEST_F(ServerTest, BatchWithNotificationsAsyncAndErrors) {
    Client c(dir.path());
    const std::string batch = "[" + request("echo", "1", R"({"x":1})") + "," +
                              request("notify", "") + "," + request("async", "2") + "," +
                              R"({"foo":1})" + "," + request("nope", "3") + "," + "5" + "," +
                              request("add", "4", R"({"a":"x"})") + "]";
    ASSERT_TRUE(c.send(*server, batch));
    ASSERT_TRUE(pump_until(*server, [&] { return pending.size() == 1 && notified == 1; }));
    EXPECT_TRUE(c.quiet(*server));  // nothing until every answer is in
    pending[0]->result("async done");
    pending.clear();
    auto r = c.read(*server);
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->isArray()) << to_string(*r);
    ASSERT_EQ(r->size(), 6u) << to_string(*r);  // request order, notification left out
    expect_result((*r)[0], 1, parse(R"({"x":1})"));
    expect_result((*r)[1], 2, "async done");
    expect_error((*r)[2], Json::Value(), kInvalidRequest, "Invalid request");
    expect_error((*r)[3], 3, kMethodNotFound, "Method not found");
    expect_error((*r)[4], Json::Value(), kInvalidRequest, "Invalid request");
    expect_error((*r)[5], 4, kInvalidParams,
                 "Invalid parameter 'a': expected integer between -1000 and 1000");
    EXPECT_TRUE(c.quiet(*server));
}

TEST_F(ServerTest, BatchOfOnlyNotificationsWritesNothing) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, "[" + request("notify", "") + "," + request("notify", "") + "," +
                                    request("nope", "") + "]" + request("echo", "1")));
    expect_result(c.read(*server), 1, Json::Value());
    EXPECT_EQ(notified, 2);
    EXPECT_TRUE(c.quiet(*server));
}

TEST_F(ServerTest, BatchOfInvalidElements) {
    auto r = call(R"([1,"x",[],{"jsonrpc":"2.0","method":"echo","id":{}}])");
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->isArray());
    ASSERT_EQ(r->size(), 4u);
    for (const auto &e : *r) {
        expect_error(e, Json::Value(), kInvalidRequest, "Invalid request");
    }
}

TEST_F(ServerTest, BatchAsyncAfterDisconnect) {
    {
        Client c(dir.path());
        ASSERT_TRUE(
            c.send(*server, "[" + request("async", "1") + "," + request("async", "2") + "]"));
        ASSERT_TRUE(pump_until(*server, [&] { return pending.size() == 2; }));
    }
    ASSERT_TRUE(pump_until(*server, [&] { return server->connection_count() == 0; }));
    pending[0]->result(1);
    pending[1]->result(2);
    pending.clear();
    pump_for(*server, 20ms);
    EXPECT_EQ(server->connection_count(), 0u);
}

TEST_F(ServerTest, HalfClosedClientStillGetsAnswers) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("echo", "1") + request("async", "2")));
    c.shutdown_write();
    expect_result(c.read(*server), 1, Json::Value());
    ASSERT_TRUE(pump_until(*server, [&] { return pending.size() == 1; }));
    EXPECT_TRUE(c.quiet(*server));
    pending[0]->result("late");
    pending.clear();
    expect_result(c.read(*server), 2, "late");
    EXPECT_TRUE(c.wait_closed(*server));  // closed once nothing is owed
    EXPECT_TRUE(pump_until(*server, [&] { return server->connection_count() == 0; }));
}

TEST_F(ServerTest, HangUpFreesConnection) {
    {
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, request("echo", "1")));  // answer goes nowhere
        ASSERT_TRUE(pump_until(*server, [&] { return server->connection_count() == 1; }));
    }
    EXPECT_TRUE(pump_until(*server, [&] { return server->connection_count() == 0; }));
    {
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, std::string(100, '{')));  // half a request, then gone
        pump_for(*server, 10ms);
    }
    EXPECT_TRUE(pump_until(*server, [&] { return server->connection_count() == 0; }));
}

TEST_F(ServerTest, FireAndForgetNotificationStillRuns) {
    {
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, request("notify", "")));
    }
    EXPECT_TRUE(pump_until(*server, [&] { return notified == 1; }));
}

TEST_F(ServerTest, OversizedRequestAnswersAndCloses) {
    ServerOptions opts;
    opts.max_request_bytes = 1024;
    start(opts);
    {  // never completes
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, R"({"jsonrpc":"2.0","method":"echo","params":{"s":")" +
                                        std::string(4000, 'x')));
        expect_error(c.read(*server), Json::Value(), kInvalidRequest, "request too large");
        EXPECT_TRUE(c.wait_closed(*server));
    }
    {  // complete, but too big, in one write
        Client c(dir.path());
        ASSERT_TRUE(
            c.send(*server, request("echo", "1", "{\"s\":\"" + std::string(2000, 'y') + "\"}")));
        expect_error(c.read(*server), Json::Value(), kInvalidRequest, "request too large");
        EXPECT_TRUE(c.wait_closed(*server));
    }
    {  // endless whitespace counts too
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, std::string(2000, ' ')));
        expect_error(c.read(*server), Json::Value(), kInvalidRequest, "request too large");
        EXPECT_TRUE(c.wait_closed(*server));
    }
    {  // just under the limit works, several times over on one connection
        Client c(dir.path());
        std::string r = request("echo", "1", "{\"s\":\"" + std::string(900, 'z') + "\"}");
        ASSERT_LE(r.size(), 1024u);
        ASSERT_TRUE(c.send(*server, r + r + r));
        for (int i = 0; i < 3; ++i) {
            auto resp = c.read(*server);
            ASSERT_TRUE(resp.has_value());
            EXPECT_EQ((*resp)["result"]["s"].asString().size(), 900u);
        }
    }
}

TEST_F(ServerTest, HugeNumbersAndOddValues) {
    auto r = call(request("echo", "123456789012345678901234567890", R"({"n":1e308,"m":-0.0})"));
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE((*r)["id"].isNumeric());
    EXPECT_TRUE((*r)["result"]["n"].isDouble());
    r = call(request("echo", "1e400"));  // overflows to infinity; the writer still emits JSON
    ASSERT_TRUE(r.has_value());
    r = call(request("echo", "18446744073709551615", R"({"big":"\u00e9\ud83d\ude00"})"));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ((*r)["id"].asUInt64(), UINT64_MAX);
    EXPECT_EQ((*r)["result"]["big"].asString(), "\xc3\xa9\xf0\x9f\x98\x80");
}

TEST_F(ServerTest, ReentrantPollIsHarmless) {
    int inner = -1;
    reg.add(
        "reenter",
        [&](const RequestPtr &r) {
            inner = server->poll();
            r->result(true);
        },
        kStartup);
    expect_result(call(request("reenter", "1")), 1, true);
    EXPECT_EQ(inner, 0);
}

TEST_F(ServerTest, RandomGarbageNeverHurts) {
    std::mt19937 rng(12345);
    const std::string valid = "[" + request("echo", "1", R"({"a":[1,"\\u00ff",{"b":2.5}]})") + "," +
                              request("add", "2", R"({"a":1})") + "]";
    for (int round = 0; round < 200; ++round) {
        std::string data;
        if (round % 2 == 0) {
            data.resize(rng() % 300);
            for (char &ch : data) {
                ch = static_cast<char>(rng());
            }
            if (round % 4 == 0 && !data.empty()) {
                data[0] = "{["[rng() % 2];
            }
        } else {
            data = valid;
            for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k) {
                data[rng() % data.size()] = static_cast<char>(rng());
            }
        }
        Client c(dir.path());
        ASSERT_TRUE(c.send(*server, data) || true);
        pump_for(*server, 1ms);
        if (round % 3 == 0) {
            c.shutdown_write();
            pump_for(*server, 1ms);
        }
    }
    testing::internal::CaptureStderr();
    pending.clear();
    testing::internal::GetCapturedStderr();
    EXPECT_TRUE(pump_until(*server, [&] { return server->connection_count() == 0; }));
    expect_result(call(request("echo", "1")), 1, Json::Value());
}

}  // namespace
}  // namespace flint::jsonrpc::test
