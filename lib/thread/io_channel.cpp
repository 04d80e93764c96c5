#include <cerrno>
#include <cstring>
#include <new>

#include "flint/util/log.h"
#include "thread_internal.h"

namespace flint::thread {

struct IoChannel {
    Device *dev;
    Thread *thread;
    uint32_t ref;
    bool destroy_pending;
};

namespace {

// Context starts a cache line after the header so modules get aligned per-thread state.
constexpr size_t kHeader = 64;
static_assert(sizeof(IoChannel) <= kHeader);
constexpr std::align_val_t kAlign{64};

IoChannel *find_channel(Thread::Impl &im, void *io_device) {
    for (IoChannel *ch : im.channels) {
        if (ch->dev->io_device == io_device) {
            return ch;
        }
    }
    return nullptr;
}

// Caller holds the lock. Removes a device whose last channel is gone and queues its done.
void finish_unregister_locked(Global &g, Device *d) {
    auto done = std::move(d->done);
    Thread *t = d->unregister_thread;
    std::string name = d->name;
    g.devices.erase(d->io_device);
    if (done) {
        if (t == nullptr || send_fn(t, std::move(done)) != 0) {
            FLINT_ERRLOG("io_device '%s': cannot deliver the unregister completion", name.c_str());
        }
    }
}

void free_channel(IoChannel *ch) {
    ::operator delete(ch, kAlign);
}

void destroy_channel_msg(void *arg) {
    auto *ch = static_cast<IoChannel *>(arg);
    ch->destroy_pending = false;
    if (ch->ref > 0) {
        return;  // taken again before the deferred destroy ran
    }
    Device *d = ch->dev;
    if (d->destroy) {
        d->destroy(channel_ctx(ch));
    }
    Global &g = global();
    std::lock_guard lock(g.mu);
    std::erase(ThreadAccess::impl(ch->thread).channels, ch);
    --d->channels;
    if (d->unregistering && d->channels == 0) {
        finish_unregister_locked(g, d);
    }
    free_channel(ch);
}

}  // namespace

void io_device_register(void *io_device, ChannelCreateFn create, ChannelDestroyFn destroy,
                        size_t ctx_size, const std::string &name) {
    Global &g = global();
    std::lock_guard lock(g.mu);
    if (g.devices.count(io_device) != 0) {
        throw std::logic_error("io_device '" + name + "' registered twice");
    }
    auto d = std::make_unique<Device>();
    d->io_device = io_device;
    d->create = std::move(create);
    d->destroy = std::move(destroy);
    d->ctx_size = ctx_size;
    d->name = name;
    g.devices.emplace(io_device, std::move(d));
}

void io_device_unregister(void *io_device, std::function<void()> done) {
    Global &g = global();
    std::lock_guard lock(g.mu);
    auto it = g.devices.find(io_device);
    if (it == g.devices.end()) {
        FLINT_ERRLOG("io_device %p is not registered", io_device);
        return;
    }
    Device *d = it->second.get();
    if (d->unregistering) {
        FLINT_ERRLOG("io_device '%s' is already unregistering", d->name.c_str());
        return;
    }
    d->unregistering = true;
    d->done = std::move(done);
    d->unregister_thread = current();
    if (d->channels == 0) {
        finish_unregister_locked(g, d);
    }
}

IoChannel *get_io_channel(void *io_device) {
    Thread *t = current();
    if (t == nullptr) {
        FLINT_ERRLOG("get_io_channel called outside a thread");
        return nullptr;
    }
    auto &im = ThreadAccess::impl(t);
    Global &g = global();
    Device *d;
    IoChannel *ch;
    {
        std::lock_guard lock(g.mu);
        auto it = g.devices.find(io_device);
        if (it == g.devices.end() || it->second->unregistering) {
            FLINT_ERRLOG("get_io_channel: io_device %p is %s", io_device,
                         it == g.devices.end() ? "not registered" : "being unregistered");
            return nullptr;
        }
        d = it->second.get();
        ch = find_channel(im, io_device);
        if (ch != nullptr) {
            ++ch->ref;
            return ch;
        }
        void *mem = ::operator new(kHeader + d->ctx_size, kAlign, std::nothrow);
        if (mem == nullptr) {
            return nullptr;
        }
        ch = new (mem) IoChannel{d, t, 1, false};
        std::memset(static_cast<char *>(mem) + kHeader, 0, d->ctx_size);
        im.channels.push_back(ch);
        ++d->channels;
    }
    // Without the lock: create may take channels of other devices.
    int rc = d->create ? d->create(channel_ctx(ch)) : 0;
    if (rc != 0) {
        FLINT_ERRLOG("io_device '%s': channel create failed on thread '%s' (%d)", d->name.c_str(),
                     t->name().c_str(), rc);
        std::lock_guard lock(g.mu);
        std::erase(im.channels, ch);
        --d->channels;
        if (d->unregistering && d->channels == 0) {
            finish_unregister_locked(g, d);
        }
        free_channel(ch);
        return nullptr;
    }
    return ch;
}

void put_io_channel(IoChannel *ch) {
    if (ch == nullptr) {
        return;
    }
    if (ch->thread != current()) {
        FLINT_ERRLOG("io_channel of '%s' put from a thread that does not own it",
                     ch->dev->name.c_str());
        return;
    }
    if (ch->ref == 0) {
        FLINT_ERRLOG("io_channel of '%s' put more often than taken", ch->dev->name.c_str());
        return;
    }
    if (--ch->ref == 0 && !ch->destroy_pending) {
        ch->destroy_pending = true;
        if (send_msg(ch->thread, destroy_channel_msg, ch) != 0) {
            ch->destroy_pending = false;
            FLINT_ERRLOG("io_channel of '%s': cannot queue its destroy", ch->dev->name.c_str());
        }
    }
}

void *channel_ctx(IoChannel *ch) {
    return reinterpret_cast<char *>(ch) + kHeader;
}
IoChannel *channel_from_ctx(void *ctx) {
    return reinterpret_cast<IoChannel *>(static_cast<char *>(ctx) - kHeader);
}
Thread *channel_thread(IoChannel *ch) {
    return ch->thread;
}

struct ChannelWalk {
    void *dev;
    std::vector<uint64_t> ids;
    size_t next = 0;
    std::function<void(ChannelIter &)> fn;
    std::function<void(int)> cpl;
    Thread *origin;
    ChannelIter iter;
    int status = 0;

    static void set_channel(ChannelIter &it, IoChannel *ch) { it.ch_ = ch; }
};

namespace {

void walk_finish(ChannelWalk *w) {
    int rc = send_fn(w->origin, [w] {
        w->cpl(w->status);
        delete w;
    });
    if (rc != 0) {
        FLINT_ERRLOG("for_each_channel: cannot return to thread '%s'", w->origin->name().c_str());
        delete w;
    }
}

void walk_step(ChannelWalk *w) {
    while (w->next < w->ids.size()) {
        uint64_t id = w->ids[w->next++];
        std::lock_guard lock(global().mu);
        Thread *t = find_thread_locked(id);
        if (t == nullptr) {
            continue;
        }
        int rc = send_fn(t, [w] {
            IoChannel *ch = find_channel(ThreadAccess::impl(current()), w->dev);
            if (ch == nullptr) {
                walk_step(w);  // the channel went away since the walk began
                return;
            }
            ChannelWalk::set_channel(w->iter, ch);
            w->fn(w->iter);
        });
        if (rc == 0) {
            return;
        }
    }
    walk_finish(w);
}

}  // namespace

void ChannelIter::next(int status) {
    ChannelWalk *w = walk_;
    w->status = status;
    if (status != 0) {
        walk_finish(w);
    } else {
        walk_step(w);
    }
}

void for_each_channel(void *io_device, std::function<void(ChannelIter &)> fn,
                      std::function<void(int status)> cpl) {
    auto *w = new ChannelWalk{io_device, {}, 0, std::move(fn), std::move(cpl), current(), {}, 0};
    w->iter.walk_ = w;
    w->iter.dev_ = io_device;
    if (w->origin == nullptr) {
        FLINT_ERRLOG("for_each_channel called outside a thread");
        delete w;
        return;
    }
    {
        std::lock_guard lock(global().mu);
        for (Thread *t : global().threads) {
            if (find_channel(ThreadAccess::impl(t), io_device) != nullptr) {
                w->ids.push_back(t->id());
            }
        }
    }
    walk_step(w);
}

}  // namespace flint::thread
