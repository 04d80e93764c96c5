// Socket lifecycle and resource limits of the server.

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "rpc_test_util.h"

namespace flint::jsonrpc::test {
namespace {

using ServerSocketTest = RpcServerTest;

bool exists(const std::string &path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

TEST_F(ServerSocketTest, SocketIsPrivate) {
    struct stat st {};
    ASSERT_EQ(::lstat(dir.path().c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(server->path(), dir.path());
}

TEST_F(ServerSocketTest, ListenTwiceFails) {
    std::string err;
    EXPECT_EQ(server->listen(dir.path("other.sock"), &err), -EALREADY);
    EXPECT_FALSE(err.empty());
    EXPECT_FALSE(exists(dir.path("other.sock")));
}

TEST_F(ServerSocketTest, StaleSocketIsReplaced) {
    const std::string path = dir.path("stale.sock");
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
    ::close(fd);  // the file stays; nobody listens: what a crashed daemon leaves behind
    ASSERT_TRUE(exists(path));

    Server s(reg);
    std::string err;
    ASSERT_EQ(s.listen(path, &err), 0) << err;
    Client c(path);
    ASSERT_TRUE(c.send(s, request("echo", "1")));
    expect_result(c.read(s), 1, Json::Value());
}

TEST_F(ServerSocketTest, LiveSocketIsRefused) {
    {
        Server second(reg);
        std::string err;
        EXPECT_EQ(second.listen(dir.path(), &err), -EADDRINUSE);
        EXPECT_EQ(err, "another process is listening on " + dir.path());
        EXPECT_TRUE(second.path().empty());
    }
    // The loser's destructor left the winner's socket alone.
    ASSERT_TRUE(exists(dir.path()));
    expect_result(call(request("echo", "1")), 1, Json::Value());
}

TEST_F(ServerSocketTest, NonSocketFileIsRefusedAndKept) {
    const std::string path = dir.path("regular");
    std::ofstream(path) << "precious";
    Server s(reg);
    std::string err;
    EXPECT_EQ(s.listen(path, &err), -EEXIST);
    EXPECT_NE(err.find("not a socket"), std::string::npos) << err;
    std::stringstream content;
    content << std::ifstream(path).rdbuf();
    EXPECT_EQ(content.str(), "precious");

    const std::string subdir = dir.path("subdir");
    ASSERT_EQ(::mkdir(subdir.c_str(), 0700), 0);
    EXPECT_EQ(s.listen(subdir, &err), -EEXIST);
    EXPECT_TRUE(exists(subdir));
}

TEST_F(ServerSocketTest, BadPaths) {
    Server s(reg);
    std::string err;
    EXPECT_EQ(s.listen("/tmp/" + std::string(200, 'p'), &err), -ENAMETOOLONG);
    EXPECT_NE(err.find("too long"), std::string::npos) << err;
    EXPECT_EQ(s.listen("", &err), -EINVAL);
    EXPECT_LT(s.listen(dir.path("no/such/dir/rpc.sock"), &err), 0);
    EXPECT_FALSE(err.empty());
    EXPECT_EQ(s.poll(), 0);  // not listening: nothing to do, no crash
}

TEST_F(ServerSocketTest, DestructorRemovesOnlyItsOwnSocket) {
    const std::string path = dir.path("own.sock");
    {
        Server s(reg);
        std::string err;
        ASSERT_EQ(s.listen(path, &err), 0) << err;
        Client c(path);
        ASSERT_TRUE(pump_until(s, [&] { return s.connection_count() == 1; }));
    }
    EXPECT_FALSE(exists(path));
    {
        Server s(reg);
        std::string err;
        ASSERT_EQ(s.listen(path, &err), 0) << err;
        ASSERT_EQ(::unlink(path.c_str()), 0);
        std::ofstream(path) << "someone else's";
    }
    EXPECT_TRUE(exists(path));
}

TEST_F(ServerSocketTest, FiftyClientsAtOnce) {
    constexpr int kClients = 50;
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.push_back(std::make_unique<Client>(dir.path()));
    }
    for (int i = 0; i < kClients; ++i) {
        // Odd clients are answered asynchronously, in reverse order.
        std::string method = i % 2 ? "async" : "echo";
        ASSERT_TRUE(clients[i]->send(
            *server, request(method, std::to_string(i), "{\"who\":" + std::to_string(i) + "}")));
    }
    ASSERT_TRUE(pump_until(*server, [&] { return pending.size() == kClients / 2; }));
    EXPECT_EQ(server->connection_count(), size_t(kClients));
    for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
        (*it)->result((*it)->params());
    }
    pending.clear();
    for (int i = kClients - 1; i >= 0; --i) {
        expect_result(clients[i]->read(*server), i, parse("{\"who\":" + std::to_string(i) + "}"));
    }
}

TEST_F(ServerSocketTest, ClientThatNeverReadsIsDropped) {
    ServerOptions opts;
    opts.max_pending_send_bytes = 1u << 20;
    start(opts);
    Client good(dir.path());
    Client slow(dir.path());
    ASSERT_TRUE(pump_until(*server, [&] { return server->connection_count() == 2; }));
    std::string burst;
    for (int i = 0; i < 40; ++i) {
        burst += request("big", std::to_string(i), R"({"size":262144})");
    }
    testing::internal::CaptureStderr();
    ASSERT_TRUE(slow.send(*server, burst));
    ASSERT_TRUE(pump_until(*server, [&] { return server->connection_count() == 1; }));
    EXPECT_NE(testing::internal::GetCapturedStderr().find("is not reading"), std::string::npos);
    ASSERT_TRUE(good.send(*server, request("big", "1", R"({"size":1000})")));
    expect_result(good.read(*server), 1, std::string(1000, 'x'));
    EXPECT_TRUE(slow.wait_closed(*server));
}

TEST_F(ServerSocketTest, BigResponseToAReadingClient) {
    Client c(dir.path());
    ASSERT_TRUE(c.send(*server, request("big", "1", R"({"size":8388608})")));
    auto r = c.read(*server);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ((*r)["result"].asString().size(), 8388608u);
}

TEST_F(ServerSocketTest, ConnectionsOverTheLimitAreClosed) {
    ServerOptions opts;
    opts.max_connections = 2;
    start(opts);
    Client a(dir.path());
    Client b(dir.path());
    ASSERT_TRUE(pump_until(*server, [&] { return server->connection_count() == 2; }));
    testing::internal::CaptureStderr();
    {
        Client c(dir.path());
        Client d(dir.path());
        EXPECT_TRUE(c.wait_closed(*server));
        EXPECT_TRUE(d.wait_closed(*server));
    }
    std::string log = testing::internal::GetCapturedStderr();
    EXPECT_EQ(log.find("refusing more"), log.rfind("refusing more")) << "logged twice: " << log;
    EXPECT_EQ(server->connection_count(), 2u);
    ASSERT_TRUE(a.send(*server, request("echo", "1")));
    expect_result(a.read(*server), 1, Json::Value());
    // A slot freed is a slot usable again.
    b.close();
    ASSERT_TRUE(pump_until(*server, [&] { return server->connection_count() == 1; }));
    Client e(dir.path());
    ASSERT_TRUE(e.send(*server, request("echo", "2")));
    expect_result(e.read(*server), 2, Json::Value());
}

}  // namespace
}  // namespace flint::jsonrpc::test
