// The bdev registry: modules, registration and removal, descriptors, claims, events.

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <random>

#include "bdev_internal.h"
#include "flint/bdev/module_util.h"
#include "flint/env/env.h"
#include "flint/event/app.h"
#include "flint/thread/iobuf.h"
#include "flint/util/log.h"

FLINT_LOG_FLAG(bdev);

namespace flint::bdev {
namespace {

std::vector<Module *> g_modules;
std::vector<Bdev *> g_bdevs;  // under registry_mutex()
// Freed by bdev fini; never by a static destructor, which would run after the EAL is gone.
void *g_zero_buf = nullptr;
constexpr size_t kZeroBufSize = 1u << 20;

std::string random_uuid() {
    std::random_device rd;
    unsigned char b[16];
    for (auto &x : b) {
        x = static_cast<unsigned char>(rd());
    }
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
    char out[37];
    std::snprintf(out, sizeof(out),
                  "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                  b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                  b[14], b[15]);
    return out;
}

// Caller holds the registry lock.
Bdev *find_locked(const std::string &name) {
    for (Bdev *b : g_bdevs) {
        if (b->name == name) {
            return b;
        }
        for (const auto &a : b->aliases) {
            if (a == name) {
                return b;
            }
        }
    }
    return nullptr;
}

// Runs on the app thread once a removed bdev has no descriptors left.
void finish_unregister(Bdev *b) {
    FLINT_DEBUGLOG(bdev, "bdev '%s' has no descriptors left; destroying", b->name.c_str());
    thread::io_device_unregister(b, [b] {
        qos_free(b);  // no channel points at it any more
        {
            std::lock_guard lock(registry_mutex());
            std::erase(g_bdevs, b);
        }
        auto done = std::move(b->state->unregister_done);
        std::string name = b->name;
        // destruct may free b: take what we need first.
        b->ops->destruct([done = std::move(done), name] {
            FLINT_NOTICELOG("bdev '%s' unregistered", name.c_str());
            if (done) {
                done(0);
            }
        });
    });
}

void post_to_app(std::function<void()> fn) {
    thread::Thread *app = event::app_thread();
    if (app == nullptr || thread::current() == app) {
        fn();
    } else if (thread::send_fn(app, std::move(fn)) != 0) {
        FLINT_ERRLOG("cannot reach the app thread");
    }
}

}  // namespace

Bdev::Bdev() = default;
Bdev::~Bdev() = default;

std::mutex &registry_mutex() {
    static std::mutex mu;
    return mu;
}

void register_module(Module *m) {
    for (Module *x : g_modules) {
        if (x == m) {
            return;
        }
    }
    g_modules.push_back(m);
}
const std::vector<Module *> &modules() {
    return g_modules;
}

void *zero_buffer() {
    return g_zero_buf;
}
size_t zero_buffer_size() {
    return kZeroBufSize;
}
void free_zero_buffer() {
    env::dma_free(g_zero_buf);
    g_zero_buf = nullptr;
}

int register_bdev(Bdev *b) {
    if (b == nullptr || b->name.empty() || b->ops == nullptr || b->module == nullptr ||
        b->num_blocks == 0 || b->block_size < 512 || b->block_size > 65536 || b->acwu == 0 ||
        (b->block_size & (b->block_size - 1)) != 0 ||
        (b->required_alignment & (b->required_alignment - 1)) != 0 ||
        b->required_alignment > thread::kIobufAlign) {
        return -EINVAL;
    }
    // Stored lower case, so uuids compare without regard to case.
    std::string uuid;
    if (!b->uuid.empty() && !normalize_uuid(b->uuid, &uuid)) {
        return -EINVAL;
    }
    if (g_zero_buf == nullptr) {
        g_zero_buf = env::dma_zmalloc(kZeroBufSize, 4096);
        if (g_zero_buf == nullptr) {
            return -ENOMEM;
        }
    }
    {
        std::lock_guard lock(registry_mutex());
        if (find_locked(b->name) != nullptr) {
            return -EEXIST;
        }
        for (const auto &a : b->aliases) {
            if (find_locked(a) != nullptr) {
                return -EEXIST;
            }
        }
        b->uuid = uuid.empty() ? random_uuid() : uuid;
        for (Bdev *o : g_bdevs) {
            if (o->uuid == b->uuid) {
                return -EEXIST;
            }
        }
        b->state = std::make_unique<BdevState>();
        b->state->num_blocks.store(b->num_blocks);
        b->state->lock_thread = thread::current();
        g_bdevs.push_back(b);
    }
    thread::io_device_register(
        b, [b](void *ctx) { return channel_create(b, ctx); },
        [b](void *ctx) { channel_destroy(b, ctx); }, sizeof(BdevChannel), "bdev " + b->name);
    FLINT_NOTICELOG("bdev '%s' registered (%lu blocks of %u bytes)", b->name.c_str(),
                    static_cast<unsigned long>(b->num_blocks), b->block_size);
    for (Module *m : g_modules) {
        m->examine(b);
    }
    return 0;
}

int unregister_bdev(Bdev *b, std::function<void(int)> done) {
    std::vector<Desc *> descs;
    {
        std::lock_guard lock(registry_mutex());
        if (std::find(g_bdevs.begin(), g_bdevs.end(), b) == g_bdevs.end() ||
            b->state->removing.load()) {
            return -ENODEV;
        }
        b->state->removing.store(true);
        b->state->unregister_done = std::move(done);
        descs = b->state->descs;
    }
    FLINT_NOTICELOG("bdev '%s' is being removed (%zu open descriptor(s))", b->name.c_str(),
                    descs.size());
    if (descs.empty()) {
        post_to_app([b] { finish_unregister(b); });
        return 0;
    }
    for (Desc *d : descs) {
        if (d->on_event) {
            thread::send_fn(d->thread, [d, b] { d->on_event(EventType::Remove, b); });
        }
    }
    return 0;
}

Bdev *get_bdev(const std::string &name) {
    std::lock_guard lock(registry_mutex());
    Bdev *b = find_locked(name);
    return b != nullptr && !b->state->removing.load() ? b : nullptr;
}

std::vector<Bdev *> bdevs() {
    std::lock_guard lock(registry_mutex());
    return g_bdevs;
}

int notify_resize(Bdev *b, uint64_t num_blocks) {
    if (num_blocks == 0) {
        return -EINVAL;
    }
    std::vector<Desc *> descs;
    {
        std::lock_guard lock(registry_mutex());
        if (num_blocks < b->num_blocks && !b->state->descs.empty()) {
            return -EBUSY;
        }
        b->num_blocks = num_blocks;
        b->state->num_blocks.store(num_blocks);
        descs = b->state->descs;
    }
    for (Desc *d : descs) {
        if (d->on_event) {
            thread::send_fn(d->thread, [d, b] { d->on_event(EventType::Resize, b); });
        }
    }
    return 0;
}

std::string claimed_by(const Bdev *b) {
    std::lock_guard lock(registry_mutex());
    return b->state->claim_owner;
}

int open(const std::string &name, bool write, EventCallback on_event, Desc **out) {
    thread::Thread *t = thread::current();
    if (t == nullptr) {
        FLINT_ERRLOG("bdev open of '%s' outside a thread", name.c_str());
        return -EINVAL;
    }
    std::lock_guard lock(registry_mutex());
    Bdev *b = find_locked(name);
    if (b == nullptr || b->state->removing.load()) {
        return -ENODEV;
    }
    if (write && b->state->claim != nullptr) {
        return -EPERM;
    }
    auto *d = new Desc{b, write, std::move(on_event), t};
    b->state->descs.push_back(d);
    *out = d;
    return 0;
}

void close(Desc *d) {
    if (d == nullptr) {
        return;
    }
    Bdev *b = d->bdev;
    bool last_of_removed;
    {
        std::lock_guard lock(registry_mutex());
        if (b->state->claim == d) {
            b->state->claim = nullptr;
            b->state->claim_owner.clear();
        }
        std::erase(b->state->descs, d);
        last_of_removed = b->state->removing.load() && b->state->descs.empty();
    }
    delete d;
    if (last_of_removed) {
        post_to_app([b] { finish_unregister(b); });
    }
}

Bdev *desc_bdev(Desc *d) {
    return d->bdev;
}

int claim(Desc *d, const std::string &owner) {
    if (!d->write) {
        return -EBADF;
    }
    std::lock_guard lock(registry_mutex());
    BdevState &st = *d->bdev->state;
    if (st.claim != nullptr && st.claim != d) {
        return -EPERM;
    }
    for (Desc *o : st.descs) {
        if (o != d && o->write) {
            return -EPERM;
        }
    }
    st.claim = d;
    st.claim_owner = owner;
    return 0;
}

void release_claim(Desc *d) {
    std::lock_guard lock(registry_mutex());
    BdevState &st = *d->bdev->state;
    if (st.claim == d) {
        st.claim = nullptr;
        st.claim_owner.clear();
    }
}

thread::IoChannel *get_io_channel(Desc *d) {
    return thread::get_io_channel(d->bdev);
}

const char *io_type_name(IoType t) {
    static const char *kNames[kNumIoTypes] = {
        "read",  "write", "unmap", "write_zeroes", "flush", "reset", "compare", "compare_and_write",
        "abort",
    };
    return kNames[static_cast<int>(t)];
}

}  // namespace flint::bdev
