// bdev_malloc_create and bdev_malloc_delete, with SPDK's names, params and results.
// Bad params answer -32602 naming the field; failures of the layer answer SPDK-style with
// the negative errno as the code and a message saying what went wrong.

#include <memory>

#include "bdev_malloc.h"
#include "flint/event/app.h"
#include "flint/jsonrpc/jsonrpc.h"

namespace flint::bdev_malloc {

void register_rpcs();

namespace {

using jsonrpc::Error;
using jsonrpc::kInvalidParams;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

// SPDK's save_config also writes these; accept their no-metadata values so its configs load.
void decode_spdk_metadata_params(ParamDecoder &d, uint32_t block_size) {
    if (auto v = d.optional_uint("physical_block_size", UINT32_MAX);
        v && *v != 0 && (*v < block_size || *v % block_size != 0)) {
        throw Error(kInvalidParams,
                    "Invalid parameter 'physical_block_size': must be a multiple of block_size");
    }
    if (auto v = d.optional_uint("md_size", UINT32_MAX); v && *v != 0) {
        throw Error(kInvalidParams, "Invalid parameter 'md_size': metadata is not supported");
    }
    if (auto v = d.optional_int("dif_type", INT32_MIN, INT32_MAX); v && *v != 0) {
        throw Error(kInvalidParams,
                    "Invalid parameter 'dif_type': protection information is not supported");
    }
    if (auto v = d.optional_int("dif_pi_format", INT32_MIN, INT32_MAX); v && *v != 0) {
        throw Error(kInvalidParams,
                    "Invalid parameter 'dif_pi_format': protection information is not supported");
    }
    d.optional_bool("md_interleave");
    d.optional_bool("dif_is_head_of_md");
}

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
    decode_spdk_metadata_params(d, o.block_size);
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
    ParamDecoder d(req->params());
    std::string name = d.required_string("name");
    d.finish();
    destroy(name, [req](int rc, const std::string &error) {
        if (rc == 0) {
            req->result(true);
        } else {
            req->error(rc, error);
        }
    });
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
