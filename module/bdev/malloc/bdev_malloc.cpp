// The malloc bdev module: each bdev is one DMA-safe buffer. I/O is a memcpy/memset/memcmp
// done in submit(); its completion is queued on the thread's module channel and delivered
// by that channel's poller, so a completion never runs inside the caller's submit call.

#include "bdev_malloc.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "flint/bdev/module.h"
#include "flint/env/env.h"
#include "flint/util/log.h"

namespace flint::bdev_malloc {

void register_rpcs();  // bdev_malloc_rpc.cpp

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

int malloc_completion_poller(void *arg) {
    return complete_queued(static_cast<Channel *>(arg));
}

int channel_create(void *ctx) {
    auto *ch = new (ctx) Channel();
    ch->poller =
        thread::poller_register(malloc_completion_poller, ch, 0, "malloc_completion_poller");
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
        FLINT_ERRLOG("bdev_malloc: channel destroyed with I/O still queued");
    }
    thread::poller_unregister(&ch->poller);
    ch->~Channel();
}

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
    int init() override { return ensure_io_device(); }
    void fini() override;

    // The io_device is registered at init, or at the first create if init has not run.
    int ensure_io_device();
    MallocDisk *find(const bdev::Bdev *b) const;
    void forget(MallocDisk *disk);
    std::string next_default_name();

    std::vector<std::unique_ptr<MallocDisk>> disks;

private:
    enum class DeviceState { None, Registered, Unregistering };
    DeviceState device_ = DeviceState::None;
    uint64_t next_index_ = 0;
};

MallocModule &module() {
    static MallocModule m;
    return m;
}

void MallocDisk::submit(thread::IoChannel *ch, BdevIo *io) {
    auto *c = static_cast<Channel *>(thread::channel_ctx(ch));
    const uint64_t bs = bdev.block_size;
    NvmeStatus status = nvme_status::kSuccess;
    // The layer checks ranges; this check only guards the buffer.
    if (io->type != IoType::Flush && io->type != IoType::Reset &&
        (io->offset_blocks > capacity_blocks ||
         io->num_blocks > capacity_blocks - io->offset_blocks)) {
        queue_completion(c, io, nvme_status::kLbaOutOfRange);
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
    queue_completion(c, io, status);
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
    return &module();
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

int MallocModule::ensure_io_device() {
    switch (device_) {
        case DeviceState::Registered:
            return 0;
        case DeviceState::Unregistering:
            return -EBUSY;  // the previous fini has not finished
        case DeviceState::None:
            break;
    }
    thread::io_device_register(this, channel_create, channel_destroy, sizeof(Channel),
                               "bdev_malloc");
    device_ = DeviceState::Registered;
    return 0;
}

void MallocModule::fini() {
    if (device_ != DeviceState::Registered) {
        return;
    }
    device_ = DeviceState::Unregistering;
    thread::io_device_unregister(this, [this] { device_ = DeviceState::None; });
}

MallocDisk *MallocModule::find(const bdev::Bdev *b) const {
    for (const auto &d : disks) {
        if (&d->bdev == b) {
            return d.get();
        }
    }
    return nullptr;
}

void MallocModule::forget(MallocDisk *disk) {
    auto it =
        std::find_if(disks.begin(), disks.end(), [disk](const auto &d) { return d.get() == disk; });
    if (it != disks.end()) {
        disks.erase(it);
    }
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

// Lower case, as SPDK prints it; the nil uuid means "generate one", as in SPDK's malloc.
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

}  // namespace

bool validate(const Options &o, std::string *error) {
    auto bad = [error](const char *field, const std::string &why) {
        *error = std::string("Invalid parameter '") + field + "': " + why;
        return false;
    };
    if (o.num_blocks == 0) {
        return bad("num_blocks", "must be greater than 0");
    }
    if (o.block_size != 512 && o.block_size != 1024 && o.block_size != 2048 &&
        o.block_size != 4096) {
        return bad("block_size",
                   std::to_string(o.block_size) + " is not one of 512, 1024, 2048, 4096");
    }
    if (o.num_blocks > SIZE_MAX / o.block_size) {
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
    MallocModule &m = module();
    if (int rc = m.ensure_io_device(); rc != 0) {
        *error = "the malloc module is still shutting down";
        return rc;
    }
    std::string name = opts.name.empty() ? m.next_default_name() : opts.name;
    std::string uuid = normalize_uuid(opts.uuid);
    // Checked before allocating: a large disk is expensive to allocate and zero for nothing.
    if (bdev::get_bdev(name) != nullptr) {
        *error = "bdev name '" + name + "' already exists";
        return -EEXIST;
    }
    if (!uuid.empty() && uuid_in_use(uuid)) {
        *error = "a bdev with uuid '" + uuid + "' already exists";
        return -EEXIST;
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
    m.disks.push_back(std::move(disk));
    bdev::Bdev *bp = &b;
    int rc = bdev::register_bdev(bp);
    if (rc != 0) {
        if (rc == -EEXIST) {
            // Taken by a bdev still being removed, which get_bdev no longer sees.
            *error = uuid.empty()
                         ? "bdev name '" + name + "' already exists"
                         : "bdev name '" + name + "' or uuid '" + uuid + "' already exists";
        } else {
            *error = "could not register malloc bdev '" + name + "': " + std::strerror(-rc);
        }
        m.forget(m.find(bp));
        return rc;
    }
    *name_out = name;
    return 0;
}

void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done) {
    bdev::Bdev *b = bdev::get_bdev(name);
    MallocDisk *disk = b != nullptr ? module().find(b) : nullptr;
    if (disk == nullptr) {
        done(-ENODEV, "No such device: no malloc bdev named '" + name + "'");
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

void register_module() {
    const auto &mods = bdev::modules();
    if (std::find(mods.begin(), mods.end(), &module()) == mods.end()) {
        bdev::register_module(&module());
    }
    register_rpcs();
}

}  // namespace flint::bdev_malloc
