#pragma once
// The block device layer, module side: what a bdev module implements and may call.

#include <json/json.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flint/bdev/bdev.h"

namespace flint::bdev {

class Module {
public:
    virtual ~Module() = default;
    virtual const char *name() const = 0;
    // Runs at bdev subsystem init, on the app thread. Returns 0 or a negative errno.
    virtual int init() { return 0; }
    // Runs at bdev subsystem fini, after every bdev is unregistered.
    virtual void fini() {}
    // Appends module-wide config entries ({"method","params"}) for save_config.
    virtual void write_config(Json::Value &config) const {}
    // Offered every newly registered bdev (for modules that build on others).
    virtual void examine(Bdev *bdev) {}
};
// Registers a module; call before the bdev subsystem initialises. A repeated call with the
// same module does nothing.
void register_module(Module *m);
const std::vector<Module *> &modules();

// What a module implements for each of its bdevs.
class BdevOps {
public:
    virtual ~BdevOps() = default;
    // Starts io on the calling thread. ch is the calling thread's channel of io_device().
    // The module finishes it with io_complete() on the same thread, now or later.
    virtual void submit(thread::IoChannel *ch, BdevIo *io) = 0;
    virtual bool supports(IoType type) const = 0;
    // The io_device whose per-thread channels submit() receives.
    virtual void *io_device() = 0;
    // Frees the bdev's resources once it is unregistered and closed by all; calls done
    // (on the app thread) when finished.
    virtual void destruct(std::function<void()> done) = 0;
    // Fills bdev_get_bdevs' "driver_specific" object.
    virtual void dump_info(Json::Value &driver_specific) const {}
    // Appends the entry that recreates this bdev ({"method","params"}), if any.
    virtual void write_config(Json::Value &config) const {}
};

struct BdevState;  // the layer's own bookkeeping

struct Bdev {
    Bdev();
    ~Bdev();  // out of line: BdevState is private to the layer
    Bdev(const Bdev &) = delete;
    Bdev &operator=(const Bdev &) = delete;

    std::string name;
    std::vector<std::string> aliases;
    std::string product_name;
    uint32_t block_size = 512;
    uint64_t num_blocks = 0;
    std::string uuid;  // canonical form; generated at register when empty
    // Limits the layer splits reads and writes to fit (0 = none). A split request runs as
    // chunks (child bdev_ios, up to 32 at the module at once) and completes once, as the
    // caller sent it.
    uint32_t optimal_io_boundary = 0;  // blocks: no chunk crosses a multiple of this
    uint32_t max_transfer_blocks = 0;  // blocks per chunk
    uint32_t max_num_segments = 0;     // iovecs per chunk (at most 16 when splitting)
    uint32_t max_segment_size = 0;     // bytes per iovec
    // Bytes (a power of two up to 4096, iobuf's buffer alignment; 0 or 1 = any) that every
    // iovec's address and length must be a multiple of; the layer bounces reads and writes
    // that are not through an iobuf buffer.
    uint32_t required_alignment = 0;
    // Atomic compare & write unit: the most blocks one compare-and-write may cover.
    uint32_t acwu = 1;
    Module *module = nullptr;
    BdevOps *ops = nullptr;  // owned by the module; lives until destruct() completes

    std::unique_ptr<BdevState> state;  // set by register_bdev
};

// Registers a bdev; call on the app thread (which then serialises the bdev's LBA range
// locks). Returns 0, -EEXIST (name, alias or uuid taken) or -EINVAL (empty name, block
// size not a power of two in 512..65536, zero blocks, zero acwu, bad uuid, missing
// ops/module).
int register_bdev(Bdev *bdev);
// Starts removal: every descriptor gets a Remove event and new I/O fails with -ENODEV.
// When the last descriptor closes, ops->destruct() runs, then done(0) on the app thread.
// -ENODEV if the bdev is not registered or already being removed. On an error done is never
// called; on 0 it is called exactly once.
int unregister_bdev(Bdev *bdev, std::function<void(int)> done);
// By name or alias; nullptr if none (or being removed).
Bdev *get_bdev(const std::string &name);
// Registered bdevs in registration order.
std::vector<Bdev *> bdevs();
// Changes the size and sends Resize to every descriptor. Shrinking is refused with -EBUSY
// while any descriptor is open; -EINVAL for zero blocks.
int notify_resize(Bdev *bdev, uint64_t num_blocks);
// Name of the claim owner, or empty.
std::string claimed_by(const Bdev *bdev);

// One I/O as a module sees it. Modules read the request fields and use driver_ctx as
// per-I/O scratch space; everything else belongs to the layer.
struct BdevIo {
    IoType type;
    Bdev *bdev;
    uint64_t offset_blocks;
    uint64_t num_blocks;
    iovec *iovs;
    int iovcnt;
    BdevIo *bio_to_abort;  // Abort: the request to abort (modules that support Abort)
    static constexpr size_t kDriverCtxSize = 192;
    alignas(16) unsigned char driver_ctx[kDriverCtxSize];

    // ---- layer-private ----
    struct Private;
    Private *priv;
};

// Finishes io with an NVMe status. Must run on the thread that submitted it.
void io_complete(BdevIo *io, NvmeStatus status);
// Bytes an I/O covers.
inline uint64_t io_bytes(const BdevIo *io) {
    return io->num_blocks * io->bdev->block_size;
}

}  // namespace flint::bdev
