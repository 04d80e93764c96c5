#pragma once
// The null bdev module, as SPDK's bdev_null: no storage; reads return zeroes and writes are
// dropped. The ceiling of the bdev layer's performance. Control calls run on the app thread.

#include <cstdint>
#include <functional>
#include <string>

namespace flint::bdev_null {

struct Options {
    std::string name;  // required
    uint64_t num_blocks = 0;
    uint32_t block_size = 512;  // 512, 1024, 2048 or 4096
    std::string uuid;           // 8-4-4-4-12 hex; empty (or nil): generated
};

// Registers the module with the bdev layer and adds its RPC methods; idempotent.
void register_module();

// Checks opts; false with *error naming the bad field ("Invalid parameter 'x': ...").
bool validate(const Options &opts, std::string *error);
// Creates and registers a null bdev. Returns 0 and sets *name, or a negative errno with
// *error: -EINVAL (validate failed, or the layer refused), -EEXIST (name or uuid taken).
int create(const Options &opts, std::string *name, std::string *error);
// Unregisters the null bdev called name (or alias); as bdev_malloc::destroy.
void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done);
// Resizes the null bdev to new_size_mib MiB and notifies its descriptors; shrinking is
// refused, as in SPDK. Returns 0, or with *error: -ENODEV (no null bdev of that name),
// -EINVAL (*error is "Invalid parameter 'new_size': ...") or the layer's error.
int resize(const std::string &name, uint64_t new_size_mib, std::string *error);

}  // namespace flint::bdev_null
