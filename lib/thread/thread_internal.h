#pragma once
// Internals shared by thread.cpp and io_channel.cpp.

// The ring operations used here are header-inline. Debian builds DPDK for x86 with the
// "generic" memory model (volatile + barriers), which ThreadSanitizer cannot see; the C11
// __atomic model is equally correct on x86 and checkable, so this file selects it.
#ifndef RTE_USE_C11_MEM_MODEL
#define RTE_USE_C11_MEM_MODEL 1
#endif
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "flint/thread/thread.h"

namespace flint::thread {

struct Msg {
    MsgFn fn;
    void *arg;
};

enum class PollerState { Waiting, Running, Unregistered, Paused };
enum class PollerLoc { Active, Timed, Paused, Detached };

struct Poller {
    PollerFn fn;
    void *arg;
    uint64_t period_ticks;
    PollerState state = PollerState::Waiting;
    PollerLoc loc = PollerLoc::Active;
    std::string name;
    uint64_t id;
    uint64_t run_count = 0;
    uint64_t busy_count = 0;
    Thread *thread;
    std::multimap<uint64_t, Poller *>::iterator it;
};

struct RingDeleter {
    void operator()(rte_ring *r) const { std::free(r); }
};

// Messages one thread sends another during a poll, enqueued together when the poll ends: one
// ring operation (and its cross-core cache traffic) per batch instead of per message.
struct Outbox {
    static constexpr uint32_t kCapacity = 64;
    Thread *dest = nullptr;
    uint32_t count = 0;
    Msg msgs[kCapacity];
};

struct Thread::Impl {
    std::unique_ptr<rte_ring, RingDeleter> ring;
    // Senders that may still enqueue to this thread (open outboxes, in-flight direct sends).
    // The thread does not exit while this is non-zero.
    alignas(64) std::atomic<uint32_t> senders{0};

    static constexpr uint32_t kOutboxes = 8;
    alignas(64) Outbox outbox[kOutboxes];
    uint32_t outbox_used = 0;

    // Messages a thread sends itself skip the atomic ring: a growable circular buffer,
    // which keeps self-FIFO order and never fails.
    std::vector<Msg> local;
    size_t local_head = 0;
    size_t local_count = 0;

    std::vector<Poller *> active;
    std::vector<Poller *> paused;
    std::multimap<uint64_t, Poller *> timed;
    bool active_dirty = false;
    uint64_t next_poller_id = 1;
    uint64_t last_now = 0;

    // Written only by the owner thread, under Global::mu, so other threads may read under it.
    std::vector<IoChannel *> channels;

    uint64_t exit_deadline = 0;
};

struct Device {
    void *io_device;
    ChannelCreateFn create;
    ChannelDestroyFn destroy;
    size_t ctx_size;
    std::string name;
    uint32_t channels = 0;
    bool unregistering = false;
    std::function<void()> done;
    Thread *unregister_thread = nullptr;
};

// The library's global registry of threads and io_devices (control path only).
struct Global {
    std::mutex mu;
    std::vector<Thread *> threads;
    std::map<void *, std::unique_ptr<Device>> devices;
    uint64_t next_id = 1;
    LibOptions opts;
};
Global &global();

// Caller holds global().mu.
Thread *find_thread_locked(uint64_t id);

// Grants io_channel.cpp access to a thread's internals.
struct ThreadAccess {
    static Thread::Impl &impl(Thread *t) { return *t->impl_; }
};

}  // namespace flint::thread
