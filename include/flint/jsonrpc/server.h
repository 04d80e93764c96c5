#pragma once
// A JSON-RPC 2.0 server on a Unix stream socket. It never blocks: poll() accepts, reads,
// dispatches and writes what is ready, and returns. Run it from a poller on the app thread.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "flint/jsonrpc/jsonrpc.h"

namespace flint::jsonrpc {

struct ServerOptions {
    // One request (or batch) larger than this is answered with kInvalidRequest
    // "request too large" and the connection is closed.
    size_t max_request_bytes = 4u << 20;
    size_t max_pending_send_bytes = 64u << 20;  // a client that never reads is dropped past this
    size_t max_connections = 256;
};

class Server {
public:
    Server(Registry &registry, ServerOptions opts = {});
    ~Server();  // closes every connection and removes the socket file
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;

    // Binds and listens at path with mode 0600. A stale socket file (nobody accepting) is
    // replaced; a live one is refused. Returns 0 or a negative errno with *error set.
    int listen(const std::string &path, std::string *error);
    // Does all work that is ready without blocking. Returns the number of events handled.
    int poll();
    size_t connection_count() const;
    const std::string &path() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

namespace detail {

// Splits a byte stream into top-level JSON texts without parsing them: it tracks only {} []
// depth and string/escape state, so the parser then sees exactly one value. The position is
// kept between calls, so a value arriving in pieces is scanned once. Exposed for tests.
class FrameScanner {
public:
    enum class Result { kNeedMore, kComplete, kInvalid };
    // data: the unconsumed bytes, the same prefix on every call (possibly extended).
    // kComplete: a value ends at *end (exclusive; leading whitespace included); the caller
    // drops data[0, *end) and the scanner starts over. kInvalid: the first non-whitespace
    // byte is not '{' or '['.
    Result scan(std::string_view data, size_t *end);
    void reset() { *this = FrameScanner(); }

private:
    size_t pos_ = 0;
    size_t depth_ = 0;
    bool started_ = false;
    bool in_string_ = false;
    bool escaped_ = false;
};

}  // namespace detail
}  // namespace flint::jsonrpc
