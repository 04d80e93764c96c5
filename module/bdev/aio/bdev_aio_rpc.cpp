// bdev_aio JSON-RPC methods, with SPDK's names and params.

#include <cerrno>

#include "bdev_aio.h"
#include "flint/bdev/module_util.h"
#include "flint/event/app.h"

namespace flint::bdev_aio {

namespace {

using jsonrpc::kInternalError;
using jsonrpc::kInvalidParams;
using jsonrpc::kRuntime;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

// A taken name and a missing bdev answer with their errno, as SPDK and the other modules do;
// other bad input is -32602, a resource failure -32603.
int rpc_code(int rc) {
    if (rc == -EEXIST || rc == -ENODEV) {
        return rc;
    }
    return rc == -ENOMEM ? kInternalError : kInvalidParams;
}

void bdev_aio_create(const RequestPtr &req) {
    ParamDecoder d(req->params());
    Options o;
    o.name = d.required_string("name");
    o.filename = d.required_string("filename");
    o.block_size = static_cast<uint32_t>(d.optional_uint("block_size", UINT32_MAX).value_or(0));
    o.uuid = d.optional_string("uuid").value_or("");
    o.fallocate = d.optional_bool("fallocate").value_or(true);
    // SPDK's save_config writes "readonly": accepted so its configs load, but only false.
    bool readonly = d.optional_bool("readonly").value_or(false);
    d.finish();
    if (readonly) {
        throw jsonrpc::Error(kInvalidParams,
                             "Invalid parameter 'readonly': read-only aio bdevs are not supported");
    }
    std::string error;
    if (int rc = create(o, &error); rc != 0) {
        throw jsonrpc::Error(rpc_code(rc), error);
    }
    req->result(o.name);
}

void bdev_aio_delete(const RequestPtr &req) {
    bdev::delete_rpc(req, destroy);
}

void bdev_aio_rescan(const RequestPtr &req) {
    ParamDecoder d(req->params());
    std::string name = d.required_string("name");
    d.finish();
    std::string error;
    if (int rc = rescan(name, &error); rc != 0) {
        throw jsonrpc::Error(rpc_code(rc), error);
    }
    req->result(true);
}

}  // namespace

void register_rpcs() {
    auto &r = event::rpc_registry();
    if (r.has("bdev_aio_create")) {
        return;
    }
    r.add("bdev_aio_create", bdev_aio_create, kRuntime);
    r.add("bdev_aio_delete", bdev_aio_delete, kRuntime);
    r.add("bdev_aio_rescan", bdev_aio_rescan, kRuntime);
}

}  // namespace flint::bdev_aio
