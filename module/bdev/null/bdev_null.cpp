// The null bdev module: no storage at all. This is the bdev layer's performance ceiling, so
// submit() only touches the iovecs its type needs and queues the completion on the thread's
// module channel; that channel's poller completes it (never inside the caller's submit).

#include "bdev_null.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "flint/bdev/module.h"
#include "flint/bdev/module_util.h"

namespace flint::bdev_null {

void register_rpcs();  // bdev_null_rpc.cpp

namespace {

using bdev::BdevIo;
using bdev::IoType;
using bdev::NvmeStatus;
namespace nvme_status = bdev::nvme_status;

void zero_iovs(uint64_t len, const iovec *iov, int iovcnt) {
    for (int i = 0; i < iovcnt && len != 0; ++i) {
        size_t n = std::min<uint64_t>(iov[i].iov_len, len);
        std::memset(iov[i].iov_base, 0, n);
        len -= n;
    }
}

// p[0] == 0 and every byte equal to the one before it.
bool is_zero(const void *buf, size_t n) {
    const auto *p = static_cast<const unsigned char *>(buf);
    return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

NvmeStatus compare_iovs_with_zero(uint64_t len, const iovec *iov, int iovcnt) {
    for (int i = 0; i < iovcnt && len != 0; ++i) {
        size_t n = std::min<uint64_t>(iov[i].iov_len, len);
        if (!is_zero(iov[i].iov_base, n)) {
            return nvme_status::kCompareFailure;
        }
        len -= n;
    }
    return nvme_status::kSuccess;
}

// ---- The module and its bdevs ----

class NullModule;
NullModule &module();

class NullDisk final : public bdev::BdevOps {
public:
    void submit(thread::IoChannel *ch, BdevIo *io) override;
    bool supports(IoType type) const override;
    void *io_device() override;
    void destruct(std::function<void()> done) override;
    void dump_info(Json::Value &driver_specific) const override;
    void write_config(Json::Value &config) const override;

    bdev::Bdev bdev;
};

class NullModule final : public bdev::Module {
public:
    const char *name() const override { return "null"; }
    // The io_device is registered at init, or at the first create if init has not run.
    int init() override { return device.ensure_registered(); }
    void fini() override { device.unregister(); }

    void forget(NullDisk *disk);

    bdev::CompletionDevice device{"bdev_null", "null_io_poll"};
    std::vector<std::unique_ptr<NullDisk>> disks;
};

NullModule &module() {
    static NullModule m;
    return m;
}

void NullDisk::submit(thread::IoChannel *ch, BdevIo *io) {
    NvmeStatus status = nvme_status::kSuccess;
    switch (io->type) {
        case IoType::Read:
            zero_iovs(io->num_blocks * bdev.block_size, io->iovs, io->iovcnt);
            break;
        case IoType::Compare:
            status = compare_iovs_with_zero(io->num_blocks * bdev.block_size, io->iovs, io->iovcnt);
            break;
        case IoType::Write:
        case IoType::Unmap:
        case IoType::WriteZeroes:
        case IoType::Flush:
        case IoType::Reset:
            break;
        default:
            status = nvme_status::kInvalidField;
            break;
    }
    bdev::CompletionDevice::queue(ch).push(io, status);
}

bool NullDisk::supports(IoType type) const {
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

void *NullDisk::io_device() {
    return module().device.io_device();
}

// The disk (and the Bdev in it) goes once done() has returned: the layer is finished with
// it by then.
void NullDisk::destruct(std::function<void()> done) {
    done();
    module().forget(this);
}

void NullDisk::dump_info(Json::Value &driver_specific) const {
    if (driver_specific.isNull()) {
        driver_specific = Json::Value(Json::objectValue);
    }
}

void NullDisk::write_config(Json::Value &config) const {
    Json::Value e;
    e["method"] = "bdev_null_create";
    Json::Value &p = e["params"];
    p["name"] = bdev.name;
    p["num_blocks"] = static_cast<Json::UInt64>(bdev.num_blocks);
    p["block_size"] = bdev.block_size;
    p["uuid"] = bdev.uuid;
    config.append(e);
}

void NullModule::forget(NullDisk *disk) {
    std::erase_if(disks, [disk](const auto &d) { return d.get() == disk; });
}

constexpr uint64_t kMiB = 1024 * 1024;

}  // namespace

bool validate(const Options &o, std::string *error) {
    auto bad = [error](const char *field, const std::string &why) {
        *error = std::string("Invalid parameter '") + field + "': " + why;
        return false;
    };
    if (o.name.empty()) {
        return bad("name", "must not be empty");
    }
    return bdev::validate_geometry(o.num_blocks, o.block_size, UINT64_MAX, o.uuid, error);
}

int create(const Options &opts, std::string *name_out, std::string *error) {
    if (!validate(opts, error)) {
        return -EINVAL;
    }
    NullModule &m = module();
    if (int rc = m.device.ensure_registered(); rc != 0) {
        *error = "the null module is still shutting down";
        return rc;
    }
    std::string uuid;
    bdev::normalize_create_uuid(opts.uuid, &uuid);  // validated above
    if (int rc = bdev::check_name_and_uuid_free(opts.name, uuid, error); rc != 0) {
        return rc;
    }
    auto disk = std::make_unique<NullDisk>();
    bdev::Bdev &b = disk->bdev;
    b.name = opts.name;
    b.product_name = "Null disk";
    b.block_size = opts.block_size;
    b.num_blocks = opts.num_blocks;
    b.uuid = uuid;
    b.module = &m;
    b.ops = disk.get();

    // Kept before registering: register_bdev may hand the bdev to examine() callbacks.
    NullDisk *raw = disk.get();
    m.disks.push_back(std::move(disk));
    if (int rc = bdev::register_bdev(&b); rc != 0) {
        *error = bdev::register_error(rc, "null", opts.name, uuid);
        m.forget(raw);
        return rc;
    }
    *name_out = opts.name;
    return 0;
}

void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done) {
    bdev::delete_module_bdev(&module(), name, "null", std::move(done));
}

int resize(const std::string &name, uint64_t new_size_mib, std::string *error) {
    bdev::Bdev *b = bdev::get_bdev(name);
    if (b == nullptr || b->module != &module()) {
        *error = "No such device: no null bdev named '" + name + "'";
        return -ENODEV;
    }
    if (new_size_mib == 0 || new_size_mib > UINT64_MAX / kMiB) {
        *error = "Invalid parameter 'new_size': " + std::to_string(new_size_mib) +
                 " MiB is out of range";
        return -EINVAL;
    }
    const uint64_t new_blocks = new_size_mib * kMiB / b->block_size;
    if (new_blocks < b->num_blocks) {
        *error = "Invalid parameter 'new_size': " + std::to_string(new_size_mib) +
                 " MiB is smaller than the current size of bdev '" + b->name + "' (" +
                 std::to_string(b->num_blocks * b->block_size) + " bytes)";
        return -EINVAL;
    }
    if (int rc = bdev::notify_resize(b, new_blocks); rc != 0) {
        *error = "could not resize bdev '" + b->name + "': " + std::strerror(-rc);
        return rc;
    }
    return 0;
}

void register_module() {
    const auto &mods = bdev::modules();
    if (std::find(mods.begin(), mods.end(), &module()) == mods.end()) {
        bdev::register_module(&module());
    }
    register_rpcs();
}

}  // namespace flint::bdev_null
