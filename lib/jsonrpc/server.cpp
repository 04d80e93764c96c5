#include "flint/jsonrpc/server.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <unordered_map>
#include <utility>
#include <vector>

#include "flint/util/log.h"

namespace flint::jsonrpc {

FLINT_LOG_FLAG_EXTERN(rpc);

// ---- framing ----

namespace detail {

FrameScanner::Result FrameScanner::scan(std::string_view data, size_t *end) {
    for (; pos_ < data.size(); ++pos_) {
        const char c = data[pos_];
        if (!started_) {
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                continue;
            }
            if (c != '{' && c != '[') {
                return Result::kInvalid;
            }
            started_ = true;
            depth_ = 1;
            continue;
        }
        if (in_string_) {
            if (escaped_) {
                escaped_ = false;
            } else if (c == '\\') {
                escaped_ = true;
            } else if (c == '"') {
                in_string_ = false;
            }
            continue;
        }
        switch (c) {
            case '"':
                in_string_ = true;
                break;
            case '{':
            case '[':
                ++depth_;
                break;
            case '}':
            case ']':
                // Mismatched pairs like "{]" still end here; the parser rejects them.
                if (--depth_ == 0) {
                    *end = pos_ + 1;
                    reset();
                    return Result::kComplete;
                }
                break;
            default:
                break;
        }
    }
    return Result::kNeedMore;
}

}  // namespace detail

// ---- server ----

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr int kMaxReadsPerEvent = 16;  // bounds what one busy client costs per poll()
constexpr int kMaxEvents = 64;
constexpr int kMaxAcceptsPerPoll = 1024;
constexpr int kMaxNesting = 64;

Json::Value error_response(const Json::Value &id, int code, const char *message) {
    Json::Value r(Json::objectValue);
    r["jsonrpc"] = "2.0";
    r["id"] = id;
    Json::Value &e = r["error"];
    e["code"] = code;
    e["message"] = message;
    return r;
}

bool usable_id(const Json::Value &id) {
    return id.isNull() || id.isString() || id.isNumeric();
}

const Json::Value *member(const Json::Value &object, const char *name) {
    return object.find(name, name + std::strlen(name));
}

// Checks the envelope; *id gets the id to echo in an error (null when unusable).
bool valid_request(const Json::Value &v, Json::Value *id) {
    *id = Json::Value();
    if (!v.isObject()) {
        return false;
    }
    bool ok = true;
    if (const Json::Value *i = member(v, "id")) {
        if (usable_id(*i)) {
            *id = *i;
        } else {
            ok = false;
        }
    }
    const Json::Value *version = member(v, "jsonrpc");
    if (version == nullptr || !version->isString() || version->asString() != "2.0") {
        ok = false;
    }
    const Json::Value *method = member(v, "method");
    if (method == nullptr || !method->isString()) {
        ok = false;
    }
    const Json::Value *params = member(v, "params");
    if (params != nullptr && !params->isObject() && !params->isArray()) {
        ok = false;
    }
    return ok;
}

}  // namespace

struct Server::Impl {
    struct Conn {
        Impl *owner = nullptr;
        int fd = -1;
        std::string in;  // received, not yet framed; starts at in_off
        size_t in_off = 0;
        detail::FrameScanner scanner;
        std::string out;  // to send; starts at out_off
        size_t out_off = 0;
        uint32_t events = 0;     // registered with epoll
        size_t outstanding = 0;  // requests (or batches) still owed a response
        bool read_closed = false;
        bool close_after_flush = false;
        bool dead = false;
        bool dirty = false;

        size_t pending() const { return out.size() - out_off; }
    };
    using ConnPtr = std::shared_ptr<Conn>;

    // Collects a batch's responses; completions hold it, it only weakly holds the connection.
    struct Batch {
        std::weak_ptr<Conn> conn;
        std::vector<Json::Value> slots;  // null: no response (notification)
        size_t remaining = 1;            // 1 = guard released after all elements are dispatched
    };

    Impl(Registry &r, ServerOptions o) : registry(r), opts(o) {
        // Strict mode rejects trailing garbage, duplicate keys, NaN and single quotes; it
        // still lets comments, "01" and "+1" through, which is harmless here.
        Json::CharReaderBuilder b;
        Json::CharReaderBuilder::strictMode(&b.settings_);
        b["stackLimit"] = kMaxNesting;
        reader_builder = b;
        reader.reset(reader_builder.newCharReader());
    }
    ~Impl();

    void accept_all();
    void handle_event(const ConnPtr &c, uint32_t ev);
    void read_input(const ConnPtr &c);
    void process_input(const ConnPtr &c);
    void handle_value(const ConnPtr &c, const char *begin, const char *end);
    void handle_single(const ConnPtr &c, const Json::Value &v);
    void handle_batch(const ConnPtr &c, const Json::Value &v);
    void fail_and_close(const ConnPtr &c, int code, const char *message);
    void finish_batch(const std::shared_ptr<Batch> &batch);
    void queue(const ConnPtr &c, const Json::Value &response);
    void mark_dirty(const ConnPtr &c);
    void flush(const ConnPtr &c);
    void settle(const ConnPtr &c);
    void close_conn(const ConnPtr &c);
    int flush_dirty();

    Request::Completion single_completion(const ConnPtr &c) {
        return [weak = std::weak_ptr<Conn>(c)](const Json::Value &response) {
            ConnPtr conn = weak.lock();
            if (!conn || conn->fd < 0) {
                FLINT_DEBUGLOG(rpc, "response dropped: connection is gone");
                return;
            }
            conn->outstanding--;
            conn->owner->queue(conn, response);
        };
    }

    Registry &registry;
    ServerOptions opts;
    Json::CharReaderBuilder reader_builder;
    std::unique_ptr<Json::CharReader> reader;
    std::string path;
    dev_t sock_dev = 0;
    ino_t sock_ino = 0;
    int listen_fd = -1;
    int epfd = -1;
    std::unordered_map<int, ConnPtr> conns;
    std::vector<std::weak_ptr<Conn>> dirty;
    std::vector<char> rbuf = std::vector<char>(kReadChunk);
    bool in_poll = false;
    bool warned_full = false;
    bool warned_accept = false;
};

Server::Impl::~Impl() {
    for (auto &[fd, c] : conns) {
        ::close(fd);
        c->fd = -1;
    }
    conns.clear();  // pending async completions now find nothing to answer to
    if (!path.empty()) {
        // Only our own socket: someone may have replaced the file since.
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == sock_dev &&
            st.st_ino == sock_ino) {
            ::unlink(path.c_str());
        }
    }
    if (listen_fd >= 0) {
        ::close(listen_fd);
    }
    if (epfd >= 0) {
        ::close(epfd);
    }
}

void Server::Impl::accept_all() {
    for (int i = 0; i < kMaxAcceptsPerPoll; ++i) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && !warned_accept) {
                FLINT_ERRLOG("RPC accept on %s failed: %s", path.c_str(), std::strerror(errno));
                warned_accept = true;
            }
            return;
        }
        warned_accept = false;
        if (conns.size() >= opts.max_connections) {
            if (!warned_full) {
                FLINT_ERRLOG("RPC server %s: %zu connections, refusing more", path.c_str(),
                             conns.size());
                warned_full = true;
            }
            ::close(fd);
            continue;
        }
        auto c = std::make_shared<Conn>();
        c->owner = this;
        c->fd = fd;
        c->events = EPOLLIN | EPOLLRDHUP;
        epoll_event ev{};
        ev.events = c->events;
        ev.data.fd = fd;
        if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            FLINT_ERRLOG("RPC epoll_ctl failed: %s", std::strerror(errno));
            ::close(fd);
            continue;
        }
        conns.emplace(fd, std::move(c));
        FLINT_DEBUGLOG(rpc, "connection %d accepted", fd);
    }
}

void Server::Impl::handle_event(const ConnPtr &c, uint32_t ev) {
    if (ev & EPOLLOUT) {
        flush(c);
    }
    if (ev & EPOLLIN) {
        read_input(c);
    }
    // Data that arrived before the hang-up was read above (a fire-and-forget notification
    // still runs); nobody is left to answer.
    if (ev & (EPOLLHUP | EPOLLERR)) {
        c->dead = true;
    }
    mark_dirty(c);
}

void Server::Impl::read_input(const ConnPtr &c) {
    for (int i = 0; i < kMaxReadsPerEvent; ++i) {
        if (c->read_closed || c->close_after_flush || c->dead) {
            return;
        }
        ssize_t n = ::recv(c->fd, rbuf.data(), rbuf.size(), 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                FLINT_DEBUGLOG(rpc, "connection %d: recv: %s", c->fd, std::strerror(errno));
                c->dead = true;
            }
            return;
        }
        if (n == 0) {
            // Half-close: answer what was asked, then close (see settle()).
            FLINT_DEBUGLOG(rpc, "connection %d: peer closed its end", c->fd);
            c->read_closed = true;
            return;
        }
        if (c->in_off > 0) {
            c->in.erase(0, c->in_off);
            c->in_off = 0;
        }
        c->in.append(rbuf.data(), static_cast<size_t>(n));
        process_input(c);
        if (static_cast<size_t>(n) < rbuf.size()) {
            return;  // drained; level-triggered epoll tells us about more
        }
    }
}

void Server::Impl::process_input(const ConnPtr &c) {
    while (!c->dead && !c->close_after_flush) {
        std::string_view data(c->in.data() + c->in_off, c->in.size() - c->in_off);
        size_t end = 0;
        auto r = c->scanner.scan(data, &end);
        if (r == detail::FrameScanner::Result::kInvalid) {
            FLINT_DEBUGLOG(rpc, "connection %d: not a JSON object or array", c->fd);
            fail_and_close(c, kParseError, "Parse error");
            return;
        }
        if (r == detail::FrameScanner::Result::kNeedMore) {
            if (data.size() > opts.max_request_bytes) {
                fail_and_close(c, kInvalidRequest, "request too large");
            }
            return;
        }
        if (end > opts.max_request_bytes) {
            fail_and_close(c, kInvalidRequest, "request too large");
            return;
        }
        c->in_off += end;
        handle_value(c, data.data(), data.data() + end);  // parses before anything touches in
    }
}

void Server::Impl::fail_and_close(const ConnPtr &c, int code, const char *message) {
    // No reliable place to resume in a broken stream (SPDK closes too).
    queue(c, error_response(Json::Value(), code, message));
    c->close_after_flush = true;
    c->in.clear();
    c->in_off = 0;
}

void Server::Impl::handle_value(const ConnPtr &c, const char *begin, const char *end) {
    Json::Value root;
    std::string errs;
    bool ok = false;
    try {
        ok = reader->parse(begin, end, &root, &errs);
    } catch (const std::exception &e) {
        // jsoncpp throws when stackLimit is exceeded; start over with a fresh reader.
        errs = e.what();
        reader.reset(reader_builder.newCharReader());
    }
    if (!ok) {
        FLINT_DEBUGLOG(rpc, "connection %d: parse error: %s", c->fd, errs.c_str());
        fail_and_close(c, kParseError, "Parse error");
        return;
    }
    if (root.isArray()) {
        handle_batch(c, root);
    } else {
        handle_single(c, root);
    }
}

void Server::Impl::handle_single(const ConnPtr &c, const Json::Value &v) {
    Json::Value id;
    if (!valid_request(v, &id)) {
        queue(c, error_response(id, kInvalidRequest, "Invalid request"));
        return;
    }
    const bool has_id = v.isMember("id");
    auto request = std::make_shared<Request>(v["method"].asString(), v["params"], id,
                                             has_id ? single_completion(c) : nullptr);
    if (has_id) {
        c->outstanding++;  // before dispatch: the handler may answer right away
    } else {
        request->set_has_id(false);
    }
    registry.dispatch(request);
}

void Server::Impl::handle_batch(const ConnPtr &c, const Json::Value &v) {
    if (v.empty()) {
        queue(c, error_response(Json::Value(), kInvalidRequest, "Invalid request"));
        return;
    }
    auto batch = std::make_shared<Batch>();
    batch->conn = c;
    batch->slots.resize(v.size());
    c->outstanding++;
    for (Json::ArrayIndex i = 0; i < v.size() && !c->dead; ++i) {
        const Json::Value &e = v[i];
        Json::Value id;
        if (!valid_request(e, &id)) {
            batch->slots[i] = error_response(id, kInvalidRequest, "Invalid request");
            continue;
        }
        Request::Completion done;
        const bool has_id = e.isMember("id");
        if (has_id) {
            batch->remaining++;
            done = [batch, i](const Json::Value &response) {
                batch->slots[i] = response;
                if (--batch->remaining == 0) {
                    if (ConnPtr conn = batch->conn.lock()) {
                        conn->owner->finish_batch(batch);
                    }
                }
            };
        }
        auto request =
            std::make_shared<Request>(e["method"].asString(), e["params"], id, std::move(done));
        request->set_has_id(has_id);
        registry.dispatch(request);
    }
    if (--batch->remaining == 0) {
        finish_batch(batch);
    }
}

void Server::Impl::finish_batch(const std::shared_ptr<Batch> &batch) {
    ConnPtr c = batch->conn.lock();
    if (!c || c->fd < 0) {
        return;
    }
    c->outstanding--;
    Json::Value out(Json::arrayValue);
    for (auto &slot : batch->slots) {
        if (!slot.isNull()) {
            out.append(std::move(slot));
        }
    }
    if (!out.empty()) {  // all notifications: nothing at all is written
        queue(c, out);
    }
    mark_dirty(c);  // a half-closed connection may be done now
}

void Server::Impl::queue(const ConnPtr &c, const Json::Value &response) {
    if (c->dead || c->fd < 0) {
        return;
    }
    std::string text = to_string(response);
    if (c->pending() + text.size() + 1 > opts.max_pending_send_bytes) {
        FLINT_ERRLOG("RPC client on connection %d is not reading (%zu bytes pending); dropping it",
                     c->fd, c->pending());
        c->dead = true;
        c->out.clear();
        c->out_off = 0;
    } else {
        c->out.append(text);
        c->out.push_back('\n');  // not needed by JSON decoders; handy for line-based tools
    }
    mark_dirty(c);
}

void Server::Impl::mark_dirty(const ConnPtr &c) {
    if (!c->dirty) {
        c->dirty = true;
        dirty.push_back(c);
    }
}

void Server::Impl::flush(const ConnPtr &c) {
    while (c->pending() > 0 && !c->dead) {
        ssize_t n =
            ::send(c->fd, c->out.data() + c->out_off, c->pending(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                FLINT_DEBUGLOG(rpc, "connection %d: send: %s", c->fd, std::strerror(errno));
                c->dead = true;
            }
            break;
        }
        c->out_off += static_cast<size_t>(n);
    }
    if (c->pending() == 0) {
        c->out.clear();
        c->out_off = 0;
        if (c->out.capacity() > (1u << 20)) {
            c->out.shrink_to_fit();  // don't keep a big response's buffer around
        }
    } else if (c->out_off > c->out.size() / 2) {
        c->out.erase(0, c->out_off);
        c->out_off = 0;
    }
}

// Closes the connection if it is finished, else registers the events it waits for.
void Server::Impl::settle(const ConnPtr &c) {
    if (c->fd < 0) {
        return;
    }
    const bool flushed = c->pending() == 0;
    if (c->dead || (flushed && c->close_after_flush) ||
        (flushed && c->read_closed && c->outstanding == 0)) {
        close_conn(c);
        return;
    }
    uint32_t want = 0;
    if (!c->read_closed && !c->close_after_flush) {
        want |= EPOLLIN | EPOLLRDHUP;
    }
    if (!flushed) {
        want |= EPOLLOUT;
    }
    if (want != c->events) {
        epoll_event ev{};
        ev.events = want;
        ev.data.fd = c->fd;
        if (::epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
            FLINT_ERRLOG("RPC epoll_ctl failed: %s", std::strerror(errno));
            close_conn(c);
            return;
        }
        c->events = want;
    }
}

void Server::Impl::close_conn(const ConnPtr &c) {
    FLINT_DEBUGLOG(rpc, "connection %d closed", c->fd);
    ::epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, nullptr);
    ::close(c->fd);
    conns.erase(c->fd);
    c->fd = -1;
    c->dead = true;
    if (conns.size() < opts.max_connections) {
        warned_full = false;
    }
}

int Server::Impl::flush_dirty() {
    int n = 0;
    // Swap first: settle() may close connections, completions may add entries meanwhile.
    std::vector<std::weak_ptr<Conn>> list;
    list.swap(dirty);
    for (auto &weak : list) {
        ConnPtr c = weak.lock();
        if (!c) {
            continue;
        }
        c->dirty = false;
        if (c->fd < 0) {
            continue;
        }
        try {
            flush(c);
            settle(c);
        } catch (const std::exception &e) {
            FLINT_ERRLOG("RPC connection %d: %s; closing it", c->fd, e.what());
            close_conn(c);
        }
        ++n;
    }
    return n;
}

// ---- public ----

Server::Server(Registry &registry, ServerOptions opts)
    : impl_(std::make_unique<Impl>(registry, opts)) {}

Server::~Server() = default;

int Server::listen(const std::string &path, std::string *error) {
    auto fail = [&](int rc, const std::string &message) {
        if (error != nullptr) {
            *error = message;
        }
        return rc;
    };
    Impl &s = *impl_;
    if (s.listen_fd >= 0) {
        return fail(-EALREADY, "already listening on " + s.path);
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.find('\0') != std::string::npos) {
        return fail(-EINVAL, "invalid socket path");
    }
    if (path.size() >= sizeof(addr.sun_path)) {
        return fail(-ENAMETOOLONG, "socket path too long (max " +
                                       std::to_string(sizeof(addr.sun_path) - 1) +
                                       " bytes): " + path);
    }
    std::memcpy(addr.sun_path, path.data(), path.size());

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return fail(-EEXIST, path + " exists and is not a socket");
        }
        // A socket file stays behind when its owner crashes: replace it unless someone answers.
        int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            return fail(-errno, std::string("socket: ") + std::strerror(errno));
        }
        int rc = ::connect(probe, reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
        int err = rc == 0 ? 0 : errno;
        ::close(probe);
        if (err == 0 || err == EAGAIN || err == EINPROGRESS) {  // EAGAIN: backlog full
            return fail(-EADDRINUSE, "another process is listening on " + path);
        }
        if (err == ECONNREFUSED) {
            if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
                return fail(-errno,
                            "cannot remove stale socket " + path + ": " + std::strerror(errno));
            }
        } else if (err != ENOENT) {
            return fail(-err, "cannot probe " + path + ": " + std::strerror(err));
        }
    } else if (errno != ENOENT) {
        return fail(-errno, "cannot stat " + path + ": " + std::strerror(errno));
    }

    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return fail(-errno, std::string("socket: ") + std::strerror(errno));
    }
    auto cleanup = [&](bool unlink_path) {
        int e = errno;
        ::close(fd);
        if (unlink_path) {
            ::unlink(path.c_str());
        }
        return -e;
    };
    if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
        std::string why = std::strerror(errno);
        return fail(cleanup(false), "cannot bind " + path + ": " + why);
    }
    // Nobody can connect before listen(), so tightening the mode here leaves no window.
    if (::chmod(path.c_str(), 0600) != 0 || ::lstat(path.c_str(), &st) != 0) {
        std::string why = std::strerror(errno);
        return fail(cleanup(true), "cannot set mode of " + path + ": " + why);
    }
    if (::listen(fd, SOMAXCONN) != 0) {
        std::string why = std::strerror(errno);
        return fail(cleanup(true), "cannot listen on " + path + ": " + why);
    }
    int epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        std::string why = std::strerror(errno);
        return fail(cleanup(true), "epoll_create1: " + why);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        std::string why = std::strerror(errno);
        ::close(epfd);
        return fail(cleanup(true), "epoll_ctl: " + why);
    }
    s.listen_fd = fd;
    s.epfd = epfd;
    s.path = path;
    s.sock_dev = st.st_dev;
    s.sock_ino = st.st_ino;
    FLINT_DEBUGLOG(rpc, "listening on %s", path.c_str());
    return 0;
}

int Server::poll() {
    Impl &s = *impl_;
    // A handler that runs a nested event loop must not re-enter us.
    if (s.in_poll || s.epfd < 0) {
        return 0;
    }
    s.in_poll = true;
    int handled = 0;
    try {
        epoll_event events[kMaxEvents];
        int n = ::epoll_wait(s.epfd, events, kMaxEvents, 0);
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            if (fd == s.listen_fd) {
                s.accept_all();
                ++handled;
                continue;
            }
            auto it = s.conns.find(fd);
            if (it == s.conns.end()) {
                continue;
            }
            Impl::ConnPtr c = it->second;  // keeps it alive whatever the handlers do
            try {
                s.handle_event(c, events[i].events);
            } catch (const std::exception &e) {
                FLINT_ERRLOG("RPC connection %d: %s; closing it", fd, e.what());
                c->dead = true;
                s.mark_dirty(c);
            }
            ++handled;
        }
        handled += s.flush_dirty();
    } catch (const std::exception &e) {
        FLINT_ERRLOG("RPC server poll: %s", e.what());
    } catch (...) {
        FLINT_ERRLOG("RPC server poll: unknown exception");
    }
    s.in_poll = false;
    return handled;
}

size_t Server::connection_count() const {
    return impl_->conns.size();
}

const std::string &Server::path() const {
    return impl_->path;
}

}  // namespace flint::jsonrpc
