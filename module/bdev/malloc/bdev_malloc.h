#pragma once
// The malloc bdev module: RAM disks in DMA-safe memory, as SPDK's bdev_malloc. Control
// calls run on the app thread.

#include <cstdint>
#include <functional>
#include <string>

namespace flint::bdev_malloc {

struct Options {
    std::string name;  // empty: "Malloc<N>"
    uint64_t num_blocks = 0;
    uint32_t block_size = 512;         // 512, 1024, 2048 or 4096
    std::string uuid;                  // 8-4-4-4-12 hex; empty (or nil): generated
    uint32_t optimal_io_boundary = 0;  // blocks; 0 = none
};

// Registers the module with the bdev layer and adds its RPC methods; idempotent.
void register_module();

// Checks opts; false with *error naming the bad field ("Invalid parameter 'x': ...").
bool validate(const Options &opts, std::string *error);
// Creates and registers a malloc bdev. Returns 0 and sets *name, or a negative errno with
// *error: -EINVAL (validate failed, or the layer refused), -EEXIST (name or uuid taken),
// -ENOMEM (no DMA memory).
int create(const Options &opts, std::string *name, std::string *error);
// Unregisters the malloc bdev called name (or alias). done(0, "") once it is gone, after
// every descriptor has closed; done(-errno, message) otherwise: -ENODEV if there is no
// malloc bdev of that name, -EBUSY if it is claimed. done may run before destroy returns.
void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done);

}  // namespace flint::bdev_malloc
