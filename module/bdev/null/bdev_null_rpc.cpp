// bdev_null_create, bdev_null_delete and bdev_null_resize, with SPDK's names, params and
// results. Bad params answer -32602 naming the field; failures of the layer answer
// SPDK-style with the negative errno as the code and a message saying what went wrong.

#include <cerrno>
#include <memory>

#include "bdev_null.h"
#include "flint/bdev/module_util.h"
#include "flint/event/app.h"
#include "flint/jsonrpc/jsonrpc.h"

namespace flint::bdev_null {

void register_rpcs();

namespace {

using jsonrpc::Error;
using jsonrpc::kInvalidParams;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

void bdev_null_create(const RequestPtr &req) {
    ParamDecoder d(req->params());
    Options o;
    o.name = d.required_string("name");
    o.num_blocks = d.required_uint("num_blocks");
    o.block_size = static_cast<uint32_t>(d.required_uint("block_size", UINT32_MAX));
    if (auto uuid = d.optional_string("uuid")) {
        o.uuid = *uuid;
    }
    bdev::decode_no_metadata_params(d, o.block_size);
    d.finish();

    std::string error;
    if (!validate(o, &error)) {
        throw Error(kInvalidParams, error);
    }
    std::string name;
    if (int rc = create(o, &name, &error); rc != 0) {
        throw Error(rc, error);
    }
    req->result(name);
}

void bdev_null_delete(const RequestPtr &req) {
    bdev::delete_rpc(req, destroy);
}

void bdev_null_resize(const RequestPtr &req) {
    ParamDecoder d(req->params());
    std::string name = d.required_string("name");
    uint64_t new_size = d.required_uint("new_size");
    d.finish();
    std::string error;
    if (int rc = resize(name, new_size, &error); rc != 0) {
        throw Error(rc == -EINVAL ? kInvalidParams : rc, error);
    }
    req->result(true);
}

}  // namespace

void register_rpcs() {
    jsonrpc::Registry &r = event::rpc_registry();
    if (r.has("bdev_null_create")) {
        return;
    }
    r.add("bdev_null_create", bdev_null_create, jsonrpc::kRuntime);
    r.add("bdev_null_delete", bdev_null_delete, jsonrpc::kRuntime);
    r.add("bdev_null_resize", bdev_null_resize, jsonrpc::kRuntime);
}

}  // namespace flint::bdev_null
