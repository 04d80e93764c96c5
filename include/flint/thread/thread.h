#pragma once
// Lightweight threads, messages, pollers and per-thread I/O channels.
//
// A Thread is a unit of scheduling, not an OS thread: a reactor (or a test) calls poll() on
// it from exactly one OS thread at a time. State that belongs to a Thread is touched only
// while it polls; other Threads reach it with send_msg(), never with a lock.
//
// Data-path promises: send_msg() does not allocate (after a queue has grown to its
// high-water mark), lock or throw. Poller, channel and device registration are control
// path and may allocate.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flint/util/cpuset.h"

namespace flint::thread {

using MsgFn = void (*)(void *arg);
// A poller returns kBusy when it did work, kIdle otherwise (for busy/idle accounting).
inline constexpr int kIdle = 0;
inline constexpr int kBusy = 1;
using PollerFn = int (*)(void *arg);

class Thread;
struct Poller;
struct IoChannel;
struct ChannelWalk;

// Places a new thread on a reactor; returns 0 or a negative errno.
using ScheduleFn = std::function<int(Thread *)>;

struct LibOptions {
    ScheduleFn schedule;             // empty: threads are polled by whoever created them (tests)
    uint32_t msg_ring_size = 65536;  // cross-thread messages in flight per thread; power of two
};
void lib_init(LibOptions opts);
// Returns false (and logs the survivors) if threads are still alive.
bool lib_fini();

// Creates a thread. mask limits the cores a scheduler may place it on (nullptr: any).
// Returns nullptr if it cannot be created or scheduled.
Thread *create(const std::string &name, const util::CpuSet *mask = nullptr);
// The thread being polled on this OS thread, or nullptr.
Thread *current();

namespace detail {
extern thread_local uint64_t tls_poll_ticks;
}
// The tick at which the current poll() began (0 outside one): a clock for per-I/O
// accounting that costs no rdtsc. Resolution is one poll iteration.
inline uint64_t poll_ticks() {
    return detail::tls_poll_ticks;
}
// Reactors and tests set this around poll().
void set_current(Thread *t);

// Queues fn(arg) to run on t. FIFO per sender. Returns 0, -ENOMEM if t's queue is full, or
// -EIO if t has exited. From a thread, messages to other threads are batched and enqueued
// when the sender's poll() ends (or set_current() leaves it), so they cost one ring
// operation per batch.
int send_msg(Thread *t, MsgFn fn, void *arg);
// Enqueues t's batched outgoing messages now. poll() and set_current() do this already.
void flush_outboxes(Thread *t);
// Control-path convenience: runs a callable on t (allocates).
int send_fn(Thread *t, std::function<void()> fn);

enum class ThreadState { Running, Exiting, Exited };

struct ThreadStats {
    uint64_t busy_tsc = 0;
    uint64_t idle_tsc = 0;
    uint64_t msgs = 0;
};

struct PollerInfo {
    std::string name;
    uint64_t id;
    const char *state;
    uint64_t run_count;
    uint64_t busy_count;
    uint64_t period_ticks;
};

class Thread {
public:
    ~Thread();
    Thread(const Thread &) = delete;
    Thread &operator=(const Thread &) = delete;

    const std::string &name() const { return name_; }
    uint64_t id() const { return id_; }
    const util::CpuSet &cpumask() const { return cpumask_; }
    ThreadState state() const { return state_.load(std::memory_order_acquire); }

    // Runs up to max_msgs messages, every active poller, and the timed pollers due at now
    // (ticks). Returns kBusy if anything did work. Sets current() for its duration.
    int poll(uint32_t max_msgs, uint64_t now);

    // Starts the exit protocol: the thread keeps polling until its pollers are unregistered,
    // its channels are put and its queues are empty, then becomes Exited. After timeout_ms it
    // logs what is left and exits anyway. Call on the thread itself.
    void exit(uint64_t timeout_ms = 5000);
    bool exited() const { return state() == ThreadState::Exited; }
    // Frees an Exited thread; the owner (reactor or test) calls this after exited().
    static void destroy(Thread *t);

    const ThreadStats &stats() const { return stats_; }
    // Counts and a snapshot of pollers; call on the thread itself.
    size_t active_poller_count() const;
    size_t timed_poller_count() const;
    size_t paused_poller_count() const;
    std::vector<PollerInfo> pollers(int which) const;  // 0 active, 1 timed, 2 paused

    // Opaque slot for the scheduler (the reactor that owns it).
    void *sched_ctx = nullptr;

    struct Impl;  // defined inside lib/thread

private:
    friend Thread *create(const std::string &, const util::CpuSet *);
    friend int send_msg(Thread *, MsgFn, void *);
    friend void flush_outboxes(Thread *);
    bool try_exit();
    friend struct ThreadAccess;
    Thread(std::string name, uint64_t id, util::CpuSet mask);

    std::string name_;
    uint64_t id_;
    util::CpuSet cpumask_;
    std::atomic<ThreadState> state_{ThreadState::Running};
    ThreadStats stats_;
    std::unique_ptr<Impl> impl_;
};

// Runs fn on every live thread, one after another, then cpl on the calling thread.
void for_each_thread(std::function<void(Thread *)> fn, std::function<void()> cpl);
// Number of live (not yet destroyed) threads.
size_t thread_count();

// ---- Pollers (call on the thread that will own them) ----

// period_us 0: active poller, run on every poll(). Returns nullptr with no current thread.
Poller *poller_register(PollerFn fn, void *arg, uint64_t period_us, const char *name);
// Unregisters *p (safe from inside the poller itself) and sets *p to nullptr.
void poller_unregister(Poller **p);
void poller_pause(Poller *p);
void poller_resume(Poller *p);

// ---- I/O devices and channels ----

using ChannelCreateFn = std::function<int(void *ctx)>;
using ChannelDestroyFn = std::function<void(void *ctx)>;

// Registers io_device (any unique address). Each thread that calls get_io_channel() gets
// one channel with ctx_size bytes of context, built by create and torn down by destroy on
// that thread. Throws std::logic_error if io_device is already registered.
void io_device_register(void *io_device, ChannelCreateFn create, ChannelDestroyFn destroy,
                        size_t ctx_size, const std::string &name);
// After every channel is gone, runs done on the calling thread. Further get_io_channel()
// calls fail.
void io_device_unregister(void *io_device, std::function<void()> done);

// The calling thread's channel for io_device (created on first use, then reference
// counted). nullptr if the device is unknown, unregistering, or create failed.
IoChannel *get_io_channel(void *io_device);
// Drops a reference; the last put destroys the channel later, on this thread, unless it is
// taken again first.
void put_io_channel(IoChannel *ch);
void *channel_ctx(IoChannel *ch);
IoChannel *channel_from_ctx(void *ctx);
Thread *channel_thread(IoChannel *ch);

// Calls fn on each thread that holds a channel for io_device, one at a time; fn must call
// iter.next(status) (now or later, on that thread). A non-zero status stops the walk. cpl
// runs on the calling thread with the last status.
class ChannelIter {
public:
    void next(int status);
    IoChannel *channel() const { return ch_; }
    void *io_device() const { return dev_; }

private:
    friend void for_each_channel(void *, std::function<void(ChannelIter &)>,
                                 std::function<void(int)>);
    friend struct ChannelWalk;
    ChannelWalk *walk_ = nullptr;
    void *dev_ = nullptr;
    IoChannel *ch_ = nullptr;
};
void for_each_channel(void *io_device, std::function<void(ChannelIter &)> fn,
                      std::function<void(int status)> cpl);

}  // namespace flint::thread
