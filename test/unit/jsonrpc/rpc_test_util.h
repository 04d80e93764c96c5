#pragma once
// Helpers for the JSON-RPC tests: temp socket paths, a raw non-blocking client, and pumping
// the server from the test thread.

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>

#include "flint/jsonrpc/jsonrpc.h"
#include "flint/jsonrpc/server.h"

namespace flint::jsonrpc::test {

using namespace std::chrono_literals;

// Generous: 2-core machines, tests running in parallel, sanitizers.
constexpr auto kTimeout = 20s;

inline Json::Value parse(std::string_view text) {
    Json::CharReaderBuilder b;
    Json::CharReaderBuilder::strictMode(&b.settings_);
    b["strictRoot"] = false;
    std::unique_ptr<Json::CharReader> r(b.newCharReader());
    Json::Value v;
    std::string errs;
    if (!r->parse(text.data(), text.data() + text.size(), &v, &errs)) {
        ADD_FAILURE() << "bad JSON in test: " << errs << " in: " << text;
    }
    return v;
}

// A fresh directory per test; short enough for sun_path.
class TempDir {
public:
    TempDir() {
        std::string base = "/tmp";
        if (const char *t = std::getenv("TMPDIR"); t != nullptr && *t && std::strlen(t) < 60) {
            base = t;
        }
        std::string tmpl = base + "/flint_rpc_XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
        }
        dir_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    std::string path(const std::string &name = "rpc.sock") const { return dir_ + "/" + name; }

private:
    std::string dir_;
};

// Polls the server until pred() holds or the timeout passes.
template <class Pred>
bool pump_until(Server &server, Pred pred, std::chrono::milliseconds timeout = kTimeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        server.poll();
        if (pred()) {
            return true;
        }
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(100us);
    }
}

inline void pump_for(Server &server, std::chrono::milliseconds d) {
    pump_until(
        server, [] { return false; }, d);
}

class Client {
public:
    explicit Client(const std::string &path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        if (::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
            ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
        }
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    }
    ~Client() { close(); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    int fd() const { return fd_; }
    void close() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

    // Writes everything, polling the server whenever the socket is full.
    bool send(Server &server, std::string_view data) {
        size_t off = 0;
        bool broken = false;
        bool done = pump_until(server, [&] {
            while (off < data.size()) {
                ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    broken = true;
                    return true;
                }
                if (n <= 0) {
                    return false;
                }
                off += static_cast<size_t>(n);
            }
            return true;
        });
        return done && !broken;
    }

    // One response: the server ends each with '\n' and never puts a raw newline inside.
    std::optional<Json::Value> read(Server &server, std::chrono::milliseconds timeout = kTimeout) {
        std::optional<Json::Value> out;
        pump_until(
            server,
            [&] {
                fill();
                size_t nl = buf_.find('\n');
                if (nl == std::string::npos) {
                    return eof_;
                }
                out = parse(std::string_view(buf_).substr(0, nl));
                buf_.erase(0, nl + 1);
                return true;
            },
            timeout);
        return out;
    }

    // True once the server closed the connection (anything still unread is discarded).
    bool wait_closed(Server &server, std::chrono::milliseconds timeout = kTimeout) {
        return pump_until(
            server,
            [&] {
                fill();
                buf_.clear();
                return eof_;
            },
            timeout);
    }

    // True if nothing arrived (and the connection is open) after polling for a while.
    bool quiet(Server &server, std::chrono::milliseconds d = 100ms) {
        pump_for(server, d);
        fill();
        return buf_.empty() && !eof_;
    }

    const std::string &buffered() const { return buf_; }
    bool eof_now() {
        fill();
        return eof_;
    }

private:
    void fill() {
        char tmp[65536];
        for (;;) {
            ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
            if (n > 0) {
                buf_.append(tmp, static_cast<size_t>(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                eof_ = true;
            }
            return;
        }
    }

    int fd_ = -1;
    std::string buf_;
    bool eof_ = false;
};

inline std::string request(const std::string &method, const std::string &id,
                           const std::string &params = "") {
    std::string s = R"({"jsonrpc":"2.0","method":")" + method + "\"";
    if (!params.empty()) {
        s += ",\"params\":" + params;
    }
    if (!id.empty()) {
        s += ",\"id\":" + id;
    }
    return s + "}";
}

inline void expect_error(const std::optional<Json::Value> &r, const Json::Value &id, int code,
                         const std::string &message) {
    ASSERT_TRUE(r.has_value()) << "no response";
    EXPECT_EQ((*r)["jsonrpc"], "2.0") << to_string(*r);
    EXPECT_EQ((*r)["id"], id) << to_string(*r);
    EXPECT_FALSE(r->isMember("result")) << to_string(*r);
    EXPECT_EQ((*r)["error"]["code"], code) << to_string(*r);
    EXPECT_EQ((*r)["error"]["message"], message) << to_string(*r);
}

inline void expect_result(const std::optional<Json::Value> &r, const Json::Value &id,
                          const Json::Value &result) {
    ASSERT_TRUE(r.has_value()) << "no response";
    EXPECT_EQ((*r)["jsonrpc"], "2.0") << to_string(*r);
    EXPECT_EQ((*r)["id"], id) << to_string(*r);
    EXPECT_FALSE(r->isMember("error")) << to_string(*r);
    EXPECT_EQ((*r)["result"], result) << to_string(*r);
}

// A server on a fresh socket with a set of test methods.
class RpcServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto both = kStartup | kRuntime;
        reg.add(
            "echo", [](const RequestPtr &r) { r->result(r->params()); }, both);
        reg.add(
            "add",
            [](const RequestPtr &r) {
                ParamDecoder d(r->params());
                int64_t a = d.required_int("a", -1000, 1000);
                int64_t b = d.optional_int("b", -1000, 1000).value_or(0);
                d.finish();
                r->result(Json::Int64(a + b));
            },
            both);
        reg.add(
            "async", [this](const RequestPtr &r) { pending.push_back(r); }, both);
        reg.add(
            "notify", [this](const RequestPtr &r) { ++notified; }, both);
        reg.add(
            "big",
            [](const RequestPtr &r) {
                ParamDecoder d(r->params());
                uint64_t size = d.required_uint("size", 64u << 20);
                d.finish();
                r->result(std::string(size, 'x'));
            },
            both);
        reg.add(
            "throws_error", [](const RequestPtr &) { throw Error(-32000, "custom failure"); },
            both);
        reg.add(
            "throws_std", [](const RequestPtr &) { throw std::runtime_error("boom"); }, both);
        reg.add(
            "forget", [](const RequestPtr &) {}, both);
        reg.add(
            "runtime_only", [](const RequestPtr &r) { r->result(true); }, kRuntime);
        reg.add(
            "startup_only", [](const RequestPtr &r) { r->result(true); }, kStartup);
        reg.add_alias("old_echo", "echo");
        start();
    }

    void start(ServerOptions opts = {}) {
        server.reset();
        server = std::make_unique<Server>(reg, opts);
        std::string err;
        ASSERT_EQ(server->listen(dir.path(), &err), 0) << err;
    }

    // One request on a fresh connection.
    std::optional<Json::Value> call(const std::string &text) {
        Client c(dir.path());
        EXPECT_TRUE(c.send(*server, text));
        return c.read(*server);
    }

    TempDir dir;
    Registry reg;
    std::unique_ptr<Server> server;
    std::vector<RequestPtr> pending;
    int notified = 0;
};

}  // namespace flint::jsonrpc::test
