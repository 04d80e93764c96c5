#pragma once
// JSON-RPC 2.0: requests, the method registry with allowed states, and typed param decoding.
// Control path only: handlers may allocate and throw flint::jsonrpc::Error.

#include <json/json.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace flint::jsonrpc {

enum ErrorCode : int {
    kParseError = -32700,
    kInvalidRequest = -32600,
    kMethodNotFound = -32601,
    kInvalidParams = -32602,
    kInternalError = -32603,
    kInvalidState = -32604,  // SPDK's code for "not allowed in the current phase"
};

// A JSON unsigned 64-bit integer (Json::Value's constructors are ambiguous for uint64_t).
inline Json::Value u64(uint64_t v) {
    return Json::Value(static_cast<Json::UInt64>(v));
}

// Thrown by handlers and ParamDecoder; the dispatcher turns it into an error response.
struct Error : std::runtime_error {
    Error(int code, const std::string &message) : std::runtime_error(message), code(code) {}
    int code;
};

// One call. Exactly one of result()/error() must be called, possibly later and from the
// same (app) thread; a second call is ignored and logged. For a notification (no id) the
// completion is never called. A request destroyed without a response logs an error and
// answers kInternalError "method did not respond", so a client never hangs.
class Request {
public:
    using Completion = std::function<void(const Json::Value &response)>;

    Request(std::string method, Json::Value params, Json::Value id, Completion done);
    ~Request();
    Request(const Request &) = delete;
    Request &operator=(const Request &) = delete;

    const std::string &method() const { return method_; }
    // Null when the request had no params.
    const Json::Value &params() const { return params_; }
    const Json::Value &id() const { return id_; }
    bool is_notification() const { return id_.isNull() && !has_id_; }
    bool responded() const { return responded_; }

    void result(const Json::Value &value);
    void error(int code, const std::string &message);

    // For tests and config replay: builds a request with an id from a parsed object.
    void set_has_id(bool has) { has_id_ = has; }

private:
    void send(Json::Value response);
    std::string method_;
    Json::Value params_;
    Json::Value id_;
    bool has_id_ = true;
    bool responded_ = false;
    Completion done_;
};
using RequestPtr = std::shared_ptr<Request>;
using Handler = std::function<void(const RequestPtr &)>;

// Phases of the application; a method names the phases it may run in.
enum State : uint32_t { kStartup = 1, kRuntime = 2 };

class Registry {
public:
    // Registers a method; states is a mask of State. Throws std::logic_error on a duplicate.
    void add(const std::string &name, Handler handler, uint32_t states);
    // A deprecated alias; calling it logs a one-time warning and runs the method. Throws
    // std::logic_error if alias exists or name is not a registered (non-alias) method.
    void add_alias(const std::string &alias, const std::string &name);

    void set_state(State state) { state_ = state; }
    State state() const { return state_; }

    // Runs the request's method, or answers with MethodNotFound / InvalidState / the
    // handler's Error. Never throws.
    void dispatch(const RequestPtr &request);

    bool has(const std::string &name) const;
    // Allowed-state mask of a method or alias, 0 if unknown.
    uint32_t states_of(const std::string &name) const;
    // Method names, sorted. current: only those allowed in the current state.
    std::vector<std::string> names(bool current, bool include_aliases) const;

private:
    struct Method {
        Handler handler;
        uint32_t states = 0;
        std::string alias_of;  // non-empty for an alias
        bool warned = false;
    };
    std::map<std::string, Method> methods_;
    State state_ = kStartup;
};

// Typed, strict access to a params object: every field is checked, and unknown fields are
// an error. Errors are kInvalidParams and name the field and what was expected.
class ParamDecoder {
public:
    // params may be null (no params); anything but an object or null is an error.
    explicit ParamDecoder(const Json::Value &params);

    std::string required_string(const char *name);
    std::optional<std::string> optional_string(const char *name);
    int64_t required_int(const char *name, int64_t min, int64_t max);
    std::optional<int64_t> optional_int(const char *name, int64_t min, int64_t max);
    uint64_t required_uint(const char *name, uint64_t max = UINT64_MAX);
    std::optional<uint64_t> optional_uint(const char *name, uint64_t max = UINT64_MAX);
    bool required_bool(const char *name);
    std::optional<bool> optional_bool(const char *name);
    // Raw access for nested values; marks the field as known.
    const Json::Value *optional_value(const char *name);
    // Throws for any field not asked for.
    void finish();

private:
    const Json::Value *field(const char *name, bool required);
    const Json::Value &params_;
    std::vector<std::string> seen_;
};

// Serialises a value as compact single-line JSON.
std::string to_string(const Json::Value &value);

}  // namespace flint::jsonrpc
