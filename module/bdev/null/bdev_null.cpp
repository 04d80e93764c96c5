// The null bdev module: no storage at all. This is the bdev layer's performance ceiling, so
// submit() only touches the iovecs its type needs and queues the completion on the thread's
// module channel; that channel's poller completes it (never inside the caller's submit).

#include "bdev_null.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "flint/bdev/module.h"
#include "flint/util/log.h"

namespace flint::bdev_null {

void register_rpcs();  // bdev_null_rpc.cpp

namespace {

using bdev::BdevIo;
using bdev::IoType;
using bdev::NvmeStatus;
namespace nvme_status = bdev::nvme_status;

// ---- Deferred completion: a FIFO threaded through driver_ctx, so no allocation per I/O ----

struct IoCtx {
    BdevIo *next;
    NvmeStatus status;
};
static_assert(sizeof(IoCtx) <= BdevIo::kDriverCtxSize);

IoCtx *io_ctx(BdevIo *io) {
    return std::launder(reinterpret_cast<IoCtx *>(io->driver_ctx));
}

struct Channel {
    BdevIo *head = nullptr;
    BdevIo *tail = nullptr;
    thread::Poller *poller = nullptr;
};

void queue_completion(Channel *ch, BdevIo *io, NvmeStatus status) {
    new (io->driver_ctx) IoCtx{nullptr, status};
    if (ch->tail != nullptr) {
        io_ctx(ch->tail)->next = io;
    } else {
        ch->head = io;
    }
    ch->tail = io;
}

// Detaches the list first: a completion callback may submit again, and that I/O must wait
// for the next poll.
int complete_queued(Channel *ch) {
    BdevIo *io = ch->head;
    if (io == nullptr) {
        return thread::kIdle;
    }
    ch->head = ch->tail = nullptr;
    while (io != nullptr) {
        IoCtx *c = io_ctx(io);
        BdevIo *next = c->next;
        bdev::io_complete(io, c->status);  // may free io
        io = next;
    }
    return thread::kBusy;
}

int null_io_poll(void *arg) {
    return complete_queued(static_cast<Channel *>(arg));
}

int channel_create(void *ctx) {
    auto *ch = new (ctx) Channel();
    ch->poller = thread::poller_register(null_io_poll, ch, 0, "null_io_poll");
    if (ch->poller == nullptr) {
        ch->~Channel();
        return -ENOMEM;
    }
    return 0;
}

void channel_destroy(void *ctx) {
    auto *ch = static_cast<Channel *>(ctx);
    // The layer puts this channel only after its I/O completed. If any is still queued,
    // its bdev_ios went with the layer's channel: completing them would touch freed memory.
    if (ch->head != nullptr) {
        FLINT_ERRLOG("bdev_null: channel destroyed with I/O still queued");
    }
    thread::poller_unregister(&ch->poller);
    ch->~Channel();
}

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
    int init() override { return ensure_io_device(); }
    void fini() override;

    // The io_device is registered at init, or at the first create if init has not run.
    int ensure_io_device();
    NullDisk *find(const bdev::Bdev *b) const;
    void forget(NullDisk *disk);

    std::vector<std::unique_ptr<NullDisk>> disks;

private:
    enum class DeviceState { None, Registered, Unregistering };
    DeviceState device_ = DeviceState::None;
};

NullModule &module() {
    static NullModule m;
    return m;
}

void NullDisk::submit(thread::IoChannel *ch, BdevIo *io) {
    auto *c = static_cast<Channel *>(thread::channel_ctx(ch));
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
    queue_completion(c, io, status);
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
    return &module();
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

int NullModule::ensure_io_device() {
    switch (device_) {
        case DeviceState::Registered:
            return 0;
        case DeviceState::Unregistering:
            return -EBUSY;  // the previous fini has not finished
        case DeviceState::None:
            break;
    }
    thread::io_device_register(this, channel_create, channel_destroy, sizeof(Channel), "bdev_null");
    device_ = DeviceState::Registered;
    return 0;
}

void NullModule::fini() {
    if (device_ != DeviceState::Registered) {
        return;
    }
    device_ = DeviceState::Unregistering;
    thread::io_device_unregister(this, [this] { device_ = DeviceState::None; });
}

NullDisk *NullModule::find(const bdev::Bdev *b) const {
    for (const auto &d : disks) {
        if (&d->bdev == b) {
            return d.get();
        }
    }
    return nullptr;
}

void NullModule::forget(NullDisk *disk) {
    auto it =
        std::find_if(disks.begin(), disks.end(), [disk](const auto &d) { return d.get() == disk; });
    if (it != disks.end()) {
        disks.erase(it);
    }
}

bool is_uuid(const std::string &s) {
    if (s.size() != 36) {
        return false;
    }
    for (size_t i = 0; i < s.size(); ++i) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) {
            return false;
        }
    }
    return true;
}

// Lower case, as SPDK prints it; the nil uuid means "generate one".
std::string normalize_uuid(const std::string &s) {
    std::string out = s;
    for (char &c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out == "00000000-0000-0000-0000-000000000000" ? std::string() : out;
}

bool uuid_in_use(const std::string &uuid) {
    for (bdev::Bdev *b : bdev::bdevs()) {
        if (normalize_uuid(b->uuid) == uuid) {
            return true;
        }
    }
    return false;
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
    if (o.num_blocks == 0) {
        return bad("num_blocks", "must be greater than 0");
    }
    // SPDK also takes 520, 4160... with interleaved metadata; Flint has no metadata.
    if (o.block_size != 512 && o.block_size != 1024 && o.block_size != 2048 &&
        o.block_size != 4096) {
        return bad("block_size",
                   std::to_string(o.block_size) + " is not one of 512, 1024, 2048, 4096");
    }
    if (o.num_blocks > UINT64_MAX / o.block_size) {
        return bad("num_blocks", std::to_string(o.num_blocks) + " blocks of " +
                                     std::to_string(o.block_size) + " bytes is too large");
    }
    if (!o.uuid.empty() && !is_uuid(o.uuid)) {
        return bad("uuid", "'" + o.uuid + "' is not a UUID (8-4-4-4-12 hex digits)");
    }
    return true;
}

int create(const Options &opts, std::string *name_out, std::string *error) {
    if (!validate(opts, error)) {
        return -EINVAL;
    }
    NullModule &m = module();
    if (int rc = m.ensure_io_device(); rc != 0) {
        *error = "the null module is still shutting down";
        return rc;
    }
    std::string uuid = normalize_uuid(opts.uuid);
    if (bdev::get_bdev(opts.name) != nullptr) {
        *error = "bdev name '" + opts.name + "' already exists";
        return -EEXIST;
    }
    if (!uuid.empty() && uuid_in_use(uuid)) {
        *error = "a bdev with uuid '" + uuid + "' already exists";
        return -EEXIST;
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
    m.disks.push_back(std::move(disk));
    bdev::Bdev *bp = &b;
    int rc = bdev::register_bdev(bp);
    if (rc != 0) {
        if (rc == -EEXIST) {
            // Taken by a bdev still being removed, which get_bdev no longer sees.
            *error = uuid.empty()
                         ? "bdev name '" + opts.name + "' already exists"
                         : "bdev name '" + opts.name + "' or uuid '" + uuid + "' already exists";
        } else {
            *error = "could not register null bdev '" + opts.name + "': " + std::strerror(-rc);
        }
        m.forget(m.find(bp));
        return rc;
    }
    *name_out = opts.name;
    return 0;
}

void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done) {
    bdev::Bdev *b = bdev::get_bdev(name);
    NullDisk *disk = b != nullptr ? module().find(b) : nullptr;
    if (disk == nullptr) {
        done(-ENODEV, "No such device: no null bdev named '" + name + "'");
        return;
    }
    std::string owner = bdev::claimed_by(b);
    if (!owner.empty()) {
        done(-EBUSY, "bdev '" + b->name + "' is claimed by '" + owner + "'");
        return;
    }
    // Guards against a layer that both fails the call and runs the callback.
    auto called = std::make_shared<bool>(false);
    std::string bname = b->name;
    int rc = bdev::unregister_bdev(b, [done, called, bname](int rc) {
        if (*called) {
            return;
        }
        *called = true;
        done(rc, rc == 0 ? std::string()
                         : "could not delete bdev '" + bname + "': " + std::strerror(-rc));
    });
    if (rc != 0 && !*called) {
        *called = true;
        done(rc, rc == -ENODEV ? "No such device: bdev '" + bname + "' is already being deleted"
                               : "could not delete bdev '" + bname + "': " + std::strerror(-rc));
    }
}

int resize(const std::string &name, uint64_t new_size_mib, std::string *error) {
    bdev::Bdev *b = bdev::get_bdev(name);
    if (b == nullptr || module().find(b) == nullptr) {
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
