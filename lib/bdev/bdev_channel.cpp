// Per-thread bdev channels and their preallocated bdev_ios.

#include <cerrno>
#include <new>

#include "bdev_internal.h"
#include "flint/util/log.h"

namespace flint::bdev {
namespace {

std::atomic<uint64_t> g_ios_in_pools{0};

void push_free_io(BdevChannel *bc, BdevIo *io) {
    io->priv->next_free = bc->free_list;
    bc->free_list = io;
}

}  // namespace

BdevIo *pop_free_io(BdevChannel *bc) {
    BdevIo *io = bc->free_list;
    if (io != nullptr) {
        bc->free_list = io->priv->next_free;
    }
    return io;
}

Options &options() {
    static Options o;
    return o;
}

int channel_create(Bdev *b, void *ctx) {
    auto *bc = new (ctx) BdevChannel{};
    bc->bdev = b;
    uint32_t n = options().bdev_io_cache_size;
    if (g_ios_in_pools.fetch_add(n) + n > options().bdev_io_pool_size) {
        g_ios_in_pools.fetch_sub(n);
        FLINT_ERRLOG(
            "bdev '%s': bdev_io_pool_size (%u) exhausted; raise it with "
            "bdev_set_options",
            b->name.c_str(), options().bdev_io_pool_size);
        bc->~BdevChannel();
        return -ENOMEM;
    }
    bc->pool_size = n;
    bc->module_ch = thread::get_io_channel(b->ops->io_device());
    if (bc->module_ch == nullptr) {
        g_ios_in_pools.fetch_sub(n);
        bc->~BdevChannel();
        return -ENOMEM;
    }
    bc->ios.reset(new (std::nothrow) BdevIo[n]);
    bc->privs.reset(new (std::nothrow) BdevIo::Private[n]);
    if (!bc->ios || !bc->privs) {
        FLINT_ERRLOG("bdev '%s': cannot allocate %u bdev_ios for a channel", b->name.c_str(), n);
        thread::put_io_channel(bc->module_ch);
        g_ios_in_pools.fetch_sub(n);
        bc->~BdevChannel();
        return -ENOMEM;
    }
    for (uint32_t i = n; i-- > 0;) {
        BdevIo *io = &bc->ios[i];
        io->bdev = b;
        io->priv = &bc->privs[i];
        io->priv->ch = bc;
        push_free_io(bc, io);
    }
    return 0;
}

void channel_destroy(Bdev *b, void *ctx) {
    auto *bc = static_cast<BdevChannel *>(ctx);
    if (bc->outstanding != 0) {
        FLINT_ERRLOG("bdev '%s': channel destroyed with %lu I/O outstanding", b->name.c_str(),
                     static_cast<unsigned long>(bc->outstanding));
    }
    {
        std::lock_guard lock(b->state->stats_mu);
        b->state->closed_stats.add(bc->stats);
    }
    thread::put_io_channel(bc->module_ch);
    g_ios_in_pools.fetch_sub(bc->pool_size);
    bc->~BdevChannel();
}

void free_io(BdevIo *io) {
    BdevChannel *bc = io->priv->ch;
    push_free_io(bc, io);
    if (bc->wait_head != nullptr) {
        // Hand the freed bdev_io to the oldest waiter; its submit takes it.
        IoWaitEntry *e = bc->wait_head;
        bc->wait_head = e->next;
        if (bc->wait_head == nullptr) {
            bc->wait_tail = nullptr;
        }
        e->next = nullptr;
        e->cb(e->cb_arg);
    }
}

int queue_io_wait(thread::IoChannel *ch, IoWaitEntry *entry) {
    BdevChannel *bc = bdev_channel(ch);
    if (entry == nullptr || entry->cb == nullptr || bc->free_list != nullptr) {
        return -EINVAL;
    }
    entry->next = nullptr;
    if (bc->wait_tail != nullptr) {
        bc->wait_tail->next = entry;
    } else {
        bc->wait_head = entry;
    }
    bc->wait_tail = entry;
    return 0;
}

}  // namespace flint::bdev
