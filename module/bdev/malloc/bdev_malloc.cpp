// The malloc bdev module: each bdev is one DMA-safe buffer. I/O is a memcpy/memset/memcmp
// done in submit(); its completion is queued on the thread's module channel and delivered
// by that channel's poller, so a completion never runs inside the caller's submit call.

#include "bdev_malloc.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "flint/bdev/module.h"
#include "flint/bdev/module_util.h"
#include "flint/env/env.h"
#include "flint/util/log.h"

namespace flint::bdev_malloc {

void register_rpcs();  // bdev_malloc_rpc.cpp

namespace {

using bdev::BdevIo;
using bdev::IoType;
using bdev::NvmeStatus;
namespace nvme_status = bdev::nvme_status;

// ---- Data movement between the iovecs and the disk ----

NvmeStatus copy_from_iovs(unsigned char *dst, uint64_t len, const iovec *iov, int iovcnt) {
    for (int i = 0; i < iovcnt && len != 0; ++i) {
        size_t n = std::min<uint64_t>(iov[i].iov_len, len);
        std::memcpy(dst, iov[i].iov_base, n);
        dst += n;
        len -= n;
    }
    return len == 0 ? nvme_status::kSuccess : nvme_status::kInvalidField;
}

NvmeStatus copy_to_iovs(const unsigned char *src, uint64_t len, const iovec *iov, int iovcnt) {
    for (int i = 0; i < iovcnt && len != 0; ++i) {
        size_t n = std::min<uint64_t>(iov[i].iov_len, len);
        std::memcpy(iov[i].iov_base, src, n);
        src += n;
        len -= n;
    }
    return len == 0 ? nvme_status::kSuccess : nvme_status::kInvalidField;
}

NvmeStatus compare_iovs(const unsigned char *src, uint64_t len, const iovec *iov, int iovcnt) {
    for (int i = 0; i < iovcnt && len != 0; ++i) {
        size_t n = std::min<uint64_t>(iov[i].iov_len, len);
        if (std::memcmp(iov[i].iov_base, src, n) != 0) {
            return nvme_status::kCompareFailure;
        }
        src += n;
        len -= n;
    }
    return len == 0 ? nvme_status::kSuccess : nvme_status::kInvalidField;
}

// ---- The module and its bdevs ----

class MallocModule;
MallocModule &module();

class MallocDisk final : public bdev::BdevOps {
public:
    void submit(thread::IoChannel *ch, BdevIo *io) override;
    bool supports(IoType type) const override;
    void *io_device() override;
    void destruct(std::function<void()> done) override;
    void dump_info(Json::Value &driver_specific) const override;
    void write_config(Json::Value &config) const override;

    bdev::Bdev bdev;
    env::DmaPtr mem;
    unsigned char *data = nullptr;
    uint64_t capacity_blocks = 0;  // what mem holds, whatever bdev.num_blocks says
};

class MallocModule final : public bdev::Module {
public:
    const char *name() const override { return "malloc"; }
    // The io_device is registered at init, or at the first create if init has not run.
    int init() override { return device.ensure_registered(); }
    void fini() override { device.unregister(); }

    void forget(MallocDisk *disk);
    std::string next_default_name();

    bdev::CompletionDevice device{"bdev_malloc", "malloc_completion_poller"};
    std::vector<std::unique_ptr<MallocDisk>> disks;

private:
    uint64_t next_index_ = 0;
};

MallocModule &module() {
    static MallocModule m;
    return m;
}

void MallocDisk::submit(thread::IoChannel *ch, BdevIo *io) {
    bdev::CompletionQueue &q = bdev::CompletionDevice::queue(ch);
    const uint64_t bs = bdev.block_size;
    NvmeStatus status = nvme_status::kSuccess;
    // The layer checks ranges; this check only guards the buffer.
    if (io->type != IoType::Flush && io->type != IoType::Reset &&
        (io->offset_blocks > capacity_blocks ||
         io->num_blocks > capacity_blocks - io->offset_blocks)) {
        q.push(io, nvme_status::kLbaOutOfRange);
        return;
    }
    unsigned char *p = data + io->offset_blocks * bs;
    const uint64_t len = io->num_blocks * bs;
    switch (io->type) {
        case IoType::Read:
            status = copy_to_iovs(p, len, io->iovs, io->iovcnt);
            break;
        case IoType::Write:
            status = copy_from_iovs(p, len, io->iovs, io->iovcnt);
            break;
        case IoType::Unmap:  // SPDK's malloc unmap zeroes too: reads after it return zeroes
        case IoType::WriteZeroes:
            std::memset(p, 0, len);
            break;
        case IoType::Flush:  // memory: nothing to flush
        case IoType::Reset:  // no device state beyond the buffer
            break;
        case IoType::Compare:
            status = compare_iovs(p, len, io->iovs, io->iovcnt);
            break;
        default:
            status = nvme_status::kInvalidField;
            break;
    }
    q.push(io, status);
}

bool MallocDisk::supports(IoType type) const {
    switch (type) {
        case IoType::Read:
        case IoType::Write:
        case IoType::Unmap:
        case IoType::WriteZeroes:
        case IoType::Flush:
        case IoType::Reset:
        case IoType::Compare:
            return true;
        default:
            return false;
    }
}

void *MallocDisk::io_device() {
    return module().device.io_device();
}

// The disk (and the Bdev in it) goes once done() has returned: the layer is finished with
// it by then.
void MallocDisk::destruct(std::function<void()> done) {
    mem.reset();
    data = nullptr;
    done();
    module().forget(this);
}

void MallocDisk::dump_info(Json::Value &driver_specific) const {
    if (driver_specific.isNull()) {
        driver_specific = Json::Value(Json::objectValue);
    }
}

void MallocDisk::write_config(Json::Value &config) const {
    Json::Value e;
    e["method"] = "bdev_malloc_create";
    Json::Value &p = e["params"];
    p["name"] = bdev.name;
    p["num_blocks"] = static_cast<Json::UInt64>(bdev.num_blocks);
    p["block_size"] = bdev.block_size;
    p["uuid"] = bdev.uuid;
    p["optimal_io_boundary"] = bdev.optimal_io_boundary;
    config.append(e);
}

void MallocModule::forget(MallocDisk *disk) {
    std::erase_if(disks, [disk](const auto &d) { return d.get() == disk; });
}

// SPDK numbers Malloc0, Malloc1, ... with a counter; skip names taken meanwhile.
std::string MallocModule::next_default_name() {
    for (;;) {
        std::string name = "Malloc" + std::to_string(next_index_++);
        if (bdev::get_bdev(name) == nullptr) {
            return name;
        }
    }
}

}  // namespace

bool validate(const Options &o, std::string *error) {
    return bdev::validate_geometry(o.num_blocks, o.block_size, SIZE_MAX, o.uuid, error);
}

int create(const Options &opts, std::string *name_out, std::string *error) {
    if (!validate(opts, error)) {
        return -EINVAL;
    }
    MallocModule &m = module();
    if (int rc = m.device.ensure_registered(); rc != 0) {
        *error = "the malloc module is still shutting down";
        return rc;
    }
    std::string name = opts.name.empty() ? m.next_default_name() : opts.name;
    std::string uuid;
    bdev::normalize_create_uuid(opts.uuid, &uuid);  // validated above
    // Checked before allocating: a large disk is expensive to allocate and zero for nothing.
    if (int rc = bdev::check_name_and_uuid_free(name, uuid, error); rc != 0) {
        return rc;
    }

    const size_t bytes = static_cast<size_t>(opts.num_blocks) * opts.block_size;
    void *buf = env::dma_zmalloc(bytes, 4096);
    if (buf == nullptr) {
        *error = "could not allocate " + std::to_string(bytes) +
                 " bytes of DMA memory for malloc bdev '" + name + "'";
        FLINT_ERRLOG("%s", error->c_str());
        return -ENOMEM;
    }
    auto disk = std::make_unique<MallocDisk>();
    disk->mem.reset(buf);
    disk->data = static_cast<unsigned char *>(buf);
    disk->capacity_blocks = opts.num_blocks;
    bdev::Bdev &b = disk->bdev;
    b.name = name;
    b.product_name = "Malloc disk";
    b.block_size = opts.block_size;
    b.num_blocks = opts.num_blocks;
    b.uuid = uuid;
    b.optimal_io_boundary = opts.optimal_io_boundary;
    b.module = &m;
    b.ops = disk.get();

    // Kept before registering: register_bdev may hand the bdev to examine() callbacks.
    MallocDisk *raw = disk.get();
    m.disks.push_back(std::move(disk));
    if (int rc = bdev::register_bdev(&b); rc != 0) {
        *error = bdev::register_error(rc, "malloc", name, uuid);
        m.forget(raw);
        return rc;
    }
    *name_out = name;
    return 0;
}

void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done) {
    bdev::delete_module_bdev(&module(), name, "malloc", std::move(done));
}

void register_module() {
    const auto &mods = bdev::modules();
    if (std::find(mods.begin(), mods.end(), &module()) == mods.end()) {
        bdev::register_module(&module());
    }
    register_rpcs();
}

}  // namespace flint::bdev_malloc
