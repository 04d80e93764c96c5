// Helpers bdev modules share (module_util.h).

#include "flint/bdev/module_util.h"

#include <cctype>
#include <cerrno>
#include <cstring>

#include "flint/util/log.h"

namespace flint::bdev {

// ---- Deferred completion ----

int CompletionQueue::complete_all() {
    BdevIo *io = head_;
    if (io == nullptr) {
        return thread::kIdle;
    }
    head_ = tail_ = nullptr;
    while (io != nullptr) {
        Link *l = link(io);
        BdevIo *next = l->next;
        io_complete(io, l->status);  // may free io
        io = next;
    }
    return thread::kBusy;
}

int CompletionDevice::poll(void *channel) {
    return static_cast<Channel *>(channel)->queue.complete_all();
}

int CompletionDevice::ensure_registered() {
    switch (state_) {
        case State::Registered:
            return 0;
        case State::Unregistering:
            return -EBUSY;  // the previous unregister has not finished
        case State::None:
            break;
    }
    auto create = [this](void *ctx) {
        auto *ch = new (ctx) Channel();
        ch->poller = thread::poller_register(poll, ch, 0, poller_name_);
        if (ch->poller == nullptr) {
            ch->~Channel();
            return -ENOMEM;
        }
        return 0;
    };
    auto destroy = [this](void *ctx) {
        auto *ch = static_cast<Channel *>(ctx);
        // The layer puts this channel only after its I/O completed. If any is still queued,
        // its bdev_ios went with the layer's channel: completing them would touch freed memory.
        if (!ch->queue.empty()) {
            FLINT_ERRLOG("%s: channel destroyed with I/O still queued", name_);
        }
        thread::poller_unregister(&ch->poller);
        ch->~Channel();
    };
    thread::io_device_register(this, create, destroy, sizeof(Channel), name_);
    state_ = State::Registered;
    return 0;
}

void CompletionDevice::unregister() {
    if (state_ != State::Registered) {
        return;
    }
    state_ = State::Unregistering;
    thread::io_device_unregister(this, [this] { state_ = State::None; });
}

// ---- Uuids and the create flow ----

bool normalize_uuid(const std::string &in, std::string *out) {
    if (in.size() != 36) {
        return false;
    }
    std::string u = in;
    for (size_t i = 0; i < u.size(); ++i) {
        auto c = static_cast<unsigned char>(u[i]);
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !std::isxdigit(c)) {
            return false;
        }
        u[i] = static_cast<char>(std::tolower(c));
    }
    *out = std::move(u);
    return true;
}

// The nil uuid means "generate one", as in SPDK's malloc and null.
bool normalize_create_uuid(const std::string &in, std::string *out) {
    std::string u;
    if (!in.empty() && !normalize_uuid(in, &u)) {
        return false;
    }
    *out = u == "00000000-0000-0000-0000-000000000000" ? std::string() : u;
    return true;
}

int check_name_and_uuid_free(const std::string &name, const std::string &uuid, std::string *error) {
    if (get_bdev(name) != nullptr) {
        *error = "bdev name '" + name + "' already exists";
        return -EEXIST;
    }
    if (!uuid.empty()) {
        // register_bdev stores uuids normalized; bdevs() includes those being removed.
        for (Bdev *b : bdevs()) {
            if (b->uuid == uuid) {
                *error = "a bdev with uuid '" + uuid + "' already exists";
                return -EEXIST;
            }
        }
    }
    return 0;
}

std::string register_error(int rc, const char *kind, const std::string &name,
                           const std::string &uuid) {
    if (rc == -EEXIST) {
        // Taken by a bdev still being removed, which get_bdev no longer sees.
        return uuid.empty() ? "bdev name '" + name + "' already exists"
                            : "bdev name '" + name + "' or uuid '" + uuid + "' already exists";
    }
    return std::string("could not register ") + kind + " bdev '" + name +
           "': " + std::strerror(-rc);
}

// ---- Delete ----

namespace {

std::string delete_error(const std::string &name, int rc) {
    return "could not delete bdev '" + name + "': " + std::strerror(-rc);
}

}  // namespace

void delete_module_bdev(Module *m, const std::string &name, const char *kind, DeleteDone done) {
    Bdev *b = get_bdev(name);
    if (b == nullptr || b->module != m) {
        done(-ENODEV, std::string("No such device: no ") + kind + " bdev named '" + name + "'");
        return;
    }
    std::string owner = claimed_by(b);
    if (!owner.empty()) {
        done(-EBUSY, "bdev '" + b->name + "' is claimed by '" + owner + "'");
        return;
    }
    std::string bname = b->name;  // b may be gone before unregister_bdev returns
    int rc = unregister_bdev(
        b, [done, bname](int rc) { done(rc, rc == 0 ? std::string() : delete_error(bname, rc)); });
    if (rc != 0) {  // then the callback never runs
        done(rc, rc == -ENODEV ? "No such device: bdev '" + bname + "' is already being deleted"
                               : delete_error(bname, rc));
    }
}

// ---- RPC params and handlers ----

void decode_no_metadata_params(jsonrpc::ParamDecoder &d, uint32_t block_size) {
    using jsonrpc::Error;
    using jsonrpc::kInvalidParams;
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

void delete_rpc(const jsonrpc::RequestPtr &req,
                const std::function<void(const std::string &name, DeleteDone done)> &destroy) {
    jsonrpc::ParamDecoder d(req->params());
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

bool validate_geometry(uint64_t num_blocks, uint32_t block_size, uint64_t max_bytes,
                       const std::string &uuid, std::string *error) {
    auto bad = [error](const char *field, const std::string &why) {
        *error = std::string("Invalid parameter '") + field + "': " + why;
        return false;
    };
    if (num_blocks == 0) {
        return bad("num_blocks", "must be greater than 0");
    }
    // SPDK also takes 520, 4160... with interleaved metadata; Flint has no metadata.
    if (block_size != 512 && block_size != 1024 && block_size != 2048 && block_size != 4096) {
        return bad("block_size",
                   std::to_string(block_size) + " is not one of 512, 1024, 2048, 4096");
    }
    if (num_blocks > max_bytes / block_size) {
        return bad("num_blocks", std::to_string(num_blocks) + " blocks of " +
                                     std::to_string(block_size) + " bytes is too large");
    }
    if (std::string u; !normalize_create_uuid(uuid, &u)) {
        return bad("uuid", "'" + uuid + "' is not a UUID (8-4-4-4-12 hex digits)");
    }
    return true;
}

}  // namespace flint::bdev
