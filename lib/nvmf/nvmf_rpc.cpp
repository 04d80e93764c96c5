// nvmf JSON-RPC methods and the subsystem's saved config.

#include <memory>

#include "flint/env/env.h"
#include "flint/event/app.h"
#include "flint/nvmf/tgt.h"
#include "flint/util/time.h"

namespace flint::nvmf {

using jsonrpc::kInvalidParams;
using jsonrpc::kRuntime;
using jsonrpc::kStartup;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

void write_config(Json::Value &config) {
    const TgtOptions &o = tgt_options();
    if (o.poll_groups_mask) {
        Json::Value e;
        e["method"] = "nvmf_set_config";
        e["params"]["poll_groups_mask"] = o.poll_groups_mask->to_hex();
        config.append(e);
    }
    Json::Value e;
    e["method"] = "nvmf_set_max_subsystems";
    e["params"]["max_subsystems"] = o.max_subsystems;
    config.append(e);
}

namespace {

void nvmf_set_max_subsystems(const RequestPtr &req) {
    ParamDecoder d(req->params());
    auto n = d.required_int("max_subsystems", 1, 65535);
    d.finish();
    tgt_options().max_subsystems = static_cast<uint32_t>(n);
    req->result(true);
}

void nvmf_set_config(const RequestPtr &req) {
    ParamDecoder d(req->params());
    auto mask = d.optional_string("poll_groups_mask");
    d.finish();
    if (mask) {
        util::CpuSet set;
        std::string err;
        if (!set.parse(*mask, &err)) {
            throw jsonrpc::Error(kInvalidParams, "Invalid parameter 'poll_groups_mask': " + err);
        }
        for (uint32_t core : set.cores()) {
            if (!env::cores().contains(core)) {
                throw jsonrpc::Error(kInvalidParams, "Invalid parameter 'poll_groups_mask': core " +
                                                         std::to_string(core) +
                                                         " is not in the application's core mask " +
                                                         env::cores().to_hex());
            }
        }
        tgt_options().poll_groups_mask = set;
    }
    req->result(true);
}

void nvmf_get_stats(const RequestPtr &req) {
    ParamDecoder d(req->params());
    auto tgt_name = d.optional_string("tgt_name");
    d.finish();
    if (tgt_name && *tgt_name != "nvmf_tgt") {
        throw jsonrpc::Error(kInvalidParams,
                             "Invalid parameter 'tgt_name': no target named '" + *tgt_name + "'");
    }
    auto groups = std::make_shared<Json::Value>(Json::arrayValue);
    for_each_poll_group(
        [groups](PollGroup &pg) {
            Json::Value j;
            j["name"] = pg.name;
            j["admin_qpairs"] = static_cast<Json::UInt64>(pg.admin_qpairs);
            j["io_qpairs"] = static_cast<Json::UInt64>(pg.io_qpairs);
            j["current_admin_qpairs"] = static_cast<Json::UInt64>(pg.current_admin_qpairs);
            j["current_io_qpairs"] = static_cast<Json::UInt64>(pg.current_io_qpairs);
            j["pending_bdev_io"] = static_cast<Json::UInt64>(pg.pending_bdev_io);
            j["completed_nvme_io"] = static_cast<Json::UInt64>(pg.completed_nvme_io);
            j["transports"] = Json::Value(Json::arrayValue);
            groups->append(j);
        },
        [req, groups] {
            Json::Value out;
            out["tick_rate"] = static_cast<Json::UInt64>(util::tick_hz());
            out["poll_groups"] = *groups;
            req->result(out);
        });
}

}  // namespace

void register_rpcs(jsonrpc::Registry &r) {
    r.add("nvmf_set_max_subsystems", nvmf_set_max_subsystems, kStartup);
    r.add("nvmf_set_config", nvmf_set_config, kStartup);
    r.add("nvmf_get_stats", nvmf_get_stats, kRuntime);
}

}  // namespace flint::nvmf
