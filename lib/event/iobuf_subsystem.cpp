// The "iobuf" subsystem and its RPCs.

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "flint/event/app.h"
#include "flint/event/iobuf.h"
#include "flint/event/subsystem.h"
#include "flint/thread/iobuf.h"

namespace flint::event {
namespace {

using jsonrpc::kInvalidParams;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

using jsonrpc::u64;

void iobuf_set_options(const RequestPtr &req) {
    ParamDecoder d(req->params());
    // The decoder catches wrong types; the layer checks the ranges and names the field.
    auto small_count = d.optional_uint("small_pool_count");
    auto large_count = d.optional_uint("large_pool_count");
    auto small_size = d.optional_uint("small_bufsize", UINT32_MAX);
    auto large_size = d.optional_uint("large_bufsize", UINT32_MAX);
    d.finish();
    thread::IobufOptions o = thread::iobuf_get_options();
    o.small_pool_count = small_count.value_or(o.small_pool_count);
    o.large_pool_count = large_count.value_or(o.large_pool_count);
    o.small_bufsize = static_cast<uint32_t>(small_size.value_or(o.small_bufsize));
    o.large_bufsize = static_cast<uint32_t>(large_size.value_or(o.large_bufsize));
    std::string error;
    int rc = thread::iobuf_set_options(o, &error);
    if (rc == -EINVAL) {
        // error is "<field(s)>: <reason>".
        auto colon = error.find(':');
        throw jsonrpc::Error(kInvalidParams, colon == std::string::npos
                                                 ? error
                                                 : "Invalid parameter '" + error.substr(0, colon) +
                                                       "'" + error.substr(colon));
    }
    if (rc != 0) {  // -EBUSY: the pools exist already
        throw jsonrpc::Error(jsonrpc::kInvalidState, error);
    }
    req->result(true);
}

Json::Value pool_json(const thread::IobufPoolStats &s) {
    Json::Value j;
    j["cache"] = u64(s.cache);
    j["main"] = u64(s.main);
    j["retry"] = u64(s.retry);
    return j;
}

void iobuf_get_stats(const RequestPtr &req) {
    ParamDecoder d(req->params());
    d.finish();
    thread::iobuf_get_stats([req](const std::vector<thread::IobufModuleStats> &stats) {
        Json::Value out(Json::arrayValue);
        for (const auto &m : stats) {
            Json::Value j;
            j["module"] = m.module;
            j["small_pool"] = pool_json(m.small_pool);
            j["large_pool"] = pool_json(m.large_pool);
            out.append(j);
        }
        req->result(out);
    });
}

void write_config(Json::Value &config) {
    const thread::IobufOptions &o = thread::iobuf_get_options();
    Json::Value e;
    e["method"] = "iobuf_set_options";
    e["params"]["small_pool_count"] = u64(o.small_pool_count);
    e["params"]["large_pool_count"] = u64(o.large_pool_count);
    e["params"]["small_bufsize"] = o.small_bufsize;
    e["params"]["large_bufsize"] = o.large_bufsize;
    config.append(e);
}

}  // namespace

void register_iobuf_subsystem() {
    if (subsystems().find("iobuf") != nullptr) {
        return;
    }
    subsystems().add({
        .name = "iobuf",
        .depends_on = {},
        .init = [](std::function<void(int)> done) { done(thread::iobuf_initialize()); },
        .fini =
            [](std::function<void()> done) {
                thread::iobuf_finish();
                done();
            },
        .write_config = write_config,
    });
    auto &r = rpc_registry();
    r.add("iobuf_set_options", iobuf_set_options, jsonrpc::kStartup);
    r.add("iobuf_get_stats", iobuf_get_stats, jsonrpc::kRuntime);
}

}  // namespace flint::event
