#include <exception>
#include <utility>

#include "flint/jsonrpc/jsonrpc.h"
#include "flint/util/log.h"

namespace flint::jsonrpc {

FLINT_LOG_FLAG(rpc);

namespace {

// SPDK's wording, so scripts that match on it keep working.
constexpr const char *kNotYetInitialized =
    "Method may only be called after framework is initialized using framework_start_init RPC.";
constexpr const char *kAlreadyInitialized =
    "Method may only be called before framework is initialized. Use --wait-for-rpc command line "
    "parameter and then issue this RPC before the framework_start_init RPC.";

Json::Value response_for(const Json::Value &id) {
    Json::Value r(Json::objectValue);
    r["jsonrpc"] = "2.0";
    r["id"] = id;
    return r;
}

}  // namespace

// ---- Request ----

Request::Request(std::string method, Json::Value params, Json::Value id, Completion done)
    : method_(std::move(method)),
      params_(std::move(params)),
      id_(std::move(id)),
      done_(std::move(done)) {}

Request::~Request() {
    if (responded_) {
        return;
    }
    if (is_notification()) {
        FLINT_DEBUGLOG(rpc, "notification %s finished without a response", method_.c_str());
        return;
    }
    FLINT_ERRLOG("RPC method %s did not respond", method_.c_str());
    error(kInternalError, "method did not respond");  // send() never throws
}

// Nobody will see the response of a notification or a second response: don't build it.
void Request::result(const Json::Value &value) {
    Json::Value r;
    if (!responded_ && !is_notification()) {
        r = response_for(id_);
        r["result"] = value;
    }
    send(std::move(r));
}

void Request::error(int code, const std::string &message) {
    Json::Value r;
    if (!responded_ && !is_notification()) {
        r = response_for(id_);
        Json::Value &e = r["error"];
        e["code"] = code;
        e["message"] = message;
    }
    send(std::move(r));
}

void Request::send(Json::Value response) {
    if (responded_) {
        FLINT_ERRLOG("RPC method %s responded twice; second response ignored", method_.c_str());
        return;
    }
    responded_ = true;
    // Drop the completion now: it may hold the connection's or batch's state.
    Completion done = std::move(done_);
    done_ = nullptr;
    if (is_notification() || !done) {
        return;
    }
    try {
        done(response);
    } catch (const std::exception &e) {
        FLINT_ERRLOG("RPC method %s: completion failed: %s", method_.c_str(), e.what());
    } catch (...) {
        FLINT_ERRLOG("RPC method %s: completion failed", method_.c_str());
    }
}

// ---- Registry ----

void Registry::add(const std::string &name, Handler handler, uint32_t states) {
    if (name.empty() || !handler || states == 0) {
        throw std::logic_error("invalid registration of RPC method '" + name + "'");
    }
    if (!methods_.emplace(name, Method{std::move(handler), states, {}, false}).second) {
        throw std::logic_error("RPC method '" + name + "' registered twice");
    }
}

void Registry::add_alias(const std::string &alias, const std::string &name) {
    auto target = methods_.find(name);
    if (target == methods_.end() || !target->second.alias_of.empty()) {
        throw std::logic_error("cannot alias '" + alias + "' to '" + name + "': no such method");
    }
    if (alias.empty() || !methods_.emplace(alias, Method{{}, 0, name, false}).second) {
        throw std::logic_error("RPC method '" + alias + "' registered twice");
    }
}

void Registry::dispatch(const RequestPtr &request) {
    if (!request) {
        return;
    }
    // A handler may throw after it responded; the response already went out.
    auto fail = [&](int code, const char *message) {
        if (request->responded()) {
            FLINT_ERRLOG("RPC method %s failed after responding: %s", request->method().c_str(),
                         message);
        } else {
            request->error(code, message);
        }
    };
    try {
        auto it = methods_.find(request->method());
        if (it == methods_.end()) {
            FLINT_DEBUGLOG(rpc, "method not found");
            request->error(kMethodNotFound, "Method not found");
            return;
        }
        Method *m = &it->second;
        if (!m->alias_of.empty()) {
            if (!m->warned) {
                FLINT_WARNLOG("RPC method %s is deprecated. Use %s instead.", it->first.c_str(),
                              m->alias_of.c_str());
                m->warned = true;
            }
            auto target = methods_.find(m->alias_of);
            if (target == methods_.end()) {
                request->error(kMethodNotFound, "Method not found");
                return;
            }
            m = &target->second;
        }
        if ((m->states & state_) == 0) {
            request->error(kInvalidState,
                           state_ == kStartup ? kNotYetInitialized : kAlreadyInitialized);
            return;
        }
        FLINT_DEBUGLOG(rpc, "calling %s", it->first.c_str());
        m->handler(request);
    } catch (const Error &e) {
        fail(e.code, e.what());
    } catch (const std::exception &e) {
        fail(kInternalError, e.what());
    } catch (...) {
        fail(kInternalError, "unknown exception in handler");
    }
}

bool Registry::has(const std::string &name) const {
    return methods_.count(name) != 0;
}

uint32_t Registry::states_of(const std::string &name) const {
    auto it = methods_.find(name);
    if (it == methods_.end()) {
        return 0;
    }
    if (it->second.alias_of.empty()) {
        return it->second.states;
    }
    auto target = methods_.find(it->second.alias_of);
    return target == methods_.end() ? 0 : target->second.states;
}

std::vector<std::string> Registry::names(bool current, bool include_aliases) const {
    std::vector<std::string> out;
    for (const auto &[name, m] : methods_) {  // std::map: already sorted
        if (!m.alias_of.empty() && !include_aliases) {
            continue;
        }
        if (current && (states_of(name) & state_) == 0) {
            continue;
        }
        out.push_back(name);
    }
    return out;
}

// ---- helpers ----

std::string to_string(const Json::Value &value) {
    // Non-ASCII is escaped (emitUTF8 off), so invalid UTF-8 from a client can't make the
    // output invalid JSON.
    static const Json::StreamWriterBuilder builder = [] {
        Json::StreamWriterBuilder b;
        b["indentation"] = "";
        return b;
    }();
    return Json::writeString(builder, value);
}

}  // namespace flint::jsonrpc
