// bdev_malloc_create and bdev_malloc_delete, with SPDK's names, params and results.
// Bad params answer -32602 naming the field; failures of the layer answer SPDK-style with
// the negative errno as the code and a message saying what went wrong.

#include <memory>

#include "bdev_malloc.h"
#include "flint/bdev/module_util.h"
#include "flint/event/app.h"
#include "flint/jsonrpc/jsonrpc.h"

namespace flint::bdev_malloc {

void register_rpcs();

namespace {

using jsonrpc::Error;
using jsonrpc::kInvalidParams;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

void bdev_malloc_create(const RequestPtr &req) {
    ParamDecoder d(req->params());
    Options o;
    if (auto name = d.optional_string("name")) {
        if (name->empty()) {
            throw Error(kInvalidParams, "Invalid parameter 'name': must not be empty");
        }
        o.name = *name;
    }
    o.num_blocks = d.required_uint("num_blocks");
    o.block_size = static_cast<uint32_t>(d.required_uint("block_size", UINT32_MAX));
    if (auto uuid = d.optional_string("uuid")) {
        o.uuid = *uuid;
    }
    if (auto b = d.optional_uint("optimal_io_boundary", UINT32_MAX)) {
        o.optimal_io_boundary = static_cast<uint32_t>(*b);
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

void bdev_malloc_delete(const RequestPtr &req) {
    bdev::delete_rpc(req, destroy);
}

}  // namespace

void register_rpcs() {
    jsonrpc::Registry &r = event::rpc_registry();
    if (r.has("bdev_malloc_create")) {
        return;
    }
    r.add("bdev_malloc_create", bdev_malloc_create, jsonrpc::kRuntime);
    r.add("bdev_malloc_delete", bdev_malloc_delete, jsonrpc::kRuntime);
}

}  // namespace flint::bdev_malloc
