#include <cerrno>
#include <cstring>

#include "flint/util/log.h"
#include "flint/util/time.h"
#include "thread_internal.h"

FLINT_LOG_FLAG(thread);

namespace flint::thread {
namespace {

thread_local Thread *tls_current = nullptr;

constexpr size_t kLocalInitial = 256;
constexpr uint32_t kBurst = 32;

const char *poller_state_name(PollerState s) {
    switch (s) {
        case PollerState::Waiting:
            return "waiting";
        case PollerState::Running:
            return "running";
        case PollerState::Unregistered:
            return "unregistered";
        case PollerState::Paused:
            return "paused";
    }
    return "unknown";
}

void local_push(Thread::Impl &im, Msg m) {
    if (im.local_count == im.local.size()) {
        // Grow to the new high-water mark; steady state never gets here.
        std::vector<Msg> bigger(im.local.size() * 2);
        for (size_t i = 0; i < im.local_count; ++i) {
            bigger[i] = im.local[(im.local_head + i) & (im.local.size() - 1)];
        }
        im.local.swap(bigger);
        im.local_head = 0;
    }
    im.local[(im.local_head + im.local_count) & (im.local.size() - 1)] = m;
    ++im.local_count;
}

void run_fn_msg(void *arg) {
    std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()> *>(arg));
    (*fn)();
}

}  // namespace

namespace detail {
thread_local uint64_t tls_poll_ticks = 0;
}

Global &global() {
    static Global g;
    return g;
}

Thread *find_thread_locked(uint64_t id) {
    for (Thread *t : global().threads) {
        if (t->id() == id) {
            return t;
        }
    }
    return nullptr;
}

void lib_init(LibOptions opts) {
    std::lock_guard lock(global().mu);
    global().opts = std::move(opts);
}

bool lib_fini() {
    std::lock_guard lock(global().mu);
    for (Thread *t : global().threads) {
        FLINT_ERRLOG("thread '%s' (id %lu) still alive at library fini", t->name().c_str(),
                     static_cast<unsigned long>(t->id()));
    }
    for (auto &[dev, d] : global().devices) {
        (void)d;
        FLINT_ERRLOG("io_device %p still registered at library fini", dev);
    }
    bool clean = global().threads.empty() && global().devices.empty();
    global().opts = LibOptions{};
    return clean;
}

Thread::Thread(std::string name, uint64_t id, util::CpuSet mask)
    : name_(std::move(name)), id_(id), cpumask_(mask), impl_(std::make_unique<Impl>()) {}

Thread::~Thread() {
    auto &im = *impl_;
    for (Poller *p : im.active) {
        delete p;
    }
    for (Poller *p : im.paused) {
        delete p;
    }
    for (auto &[when, p] : im.timed) {
        (void)when;
        delete p;
    }
}

Thread *create(const std::string &name, const util::CpuSet *mask) {
    Global &g = global();
    uint32_t ring_size;
    ScheduleFn schedule;
    uint64_t id;
    {
        std::lock_guard lock(g.mu);
        ring_size = g.opts.msg_ring_size;
        schedule = g.opts.schedule;
        id = g.next_id++;
    }
    if (ring_size == 0 || (ring_size & (ring_size - 1)) != 0) {
        FLINT_ERRLOG("message ring size %u is not a power of two", ring_size);
        return nullptr;
    }
    util::CpuSet cpus;
    if (mask != nullptr) {
        cpus = *mask;
    }
    auto *t = new Thread(name, id, cpus);
    auto &im = *t->impl_;
    ssize_t bytes = rte_ring_get_memsize_elem(sizeof(Msg), ring_size);
    void *mem = bytes > 0 ? std::aligned_alloc(64, (static_cast<size_t>(bytes) + 63) & ~size_t{63})
                          : nullptr;
    if (mem == nullptr) {
        FLINT_ERRLOG("cannot allocate the message ring of thread '%s'", name.c_str());
        delete t;
        return nullptr;
    }
    im.ring.reset(static_cast<rte_ring *>(mem));
    char ring_name[32];
    std::snprintf(ring_name, sizeof(ring_name), "thr_%lu", static_cast<unsigned long>(id));
    if (rte_ring_init(im.ring.get(), ring_name, ring_size, RING_F_SC_DEQ) != 0) {
        FLINT_ERRLOG("cannot initialise the message ring of thread '%s'", name.c_str());
        delete t;
        return nullptr;
    }
    im.local.resize(kLocalInitial);
    {
        std::lock_guard lock(g.mu);
        g.threads.push_back(t);
    }
    FLINT_DEBUGLOG(thread, "created thread '%s' id %lu", name.c_str(),
                   static_cast<unsigned long>(id));
    if (schedule) {
        int rc = schedule(t);
        if (rc != 0) {
            FLINT_ERRLOG("cannot schedule thread '%s': %s", name.c_str(), std::strerror(-rc));
            t->state_.store(ThreadState::Exited);
            Thread::destroy(t);
            return nullptr;
        }
    }
    return t;
}

void Thread::destroy(Thread *t) {
    if (t == nullptr) {
        return;
    }
    if (!t->exited()) {
        FLINT_ERRLOG("destroying thread '%s' that has not exited", t->name().c_str());
    }
    {
        std::lock_guard lock(global().mu);
        auto &v = global().threads;
        std::erase(v, t);
    }
    if (tls_current == t) {
        tls_current = nullptr;
    }
    delete t;
}

Thread *current() {
    return tls_current;
}
void set_current(Thread *t) {
    if (tls_current != nullptr && tls_current != t) {
        flush_outboxes(tls_current);
    }
    tls_current = t;
}

namespace {

// Announces a sender to t; fails if t has exited. Pairs with the exit check in poll():
// both sides write then read with seq_cst, so at least one sees the other.
bool sender_enter(Thread::Impl &im, const std::atomic<ThreadState> &state) {
    im.senders.fetch_add(1, std::memory_order_seq_cst);
    if (state.load(std::memory_order_seq_cst) == ThreadState::Exited) {
        im.senders.fetch_sub(1, std::memory_order_release);
        return false;
    }
    return true;
}

// Enqueues what the ring takes; returns true if the outbox is now empty.
bool outbox_flush(Outbox &ob) {
    auto &dim = ThreadAccess::impl(ob.dest);
    unsigned n =
        rte_ring_mp_enqueue_burst_elem(dim.ring.get(), ob.msgs, sizeof(Msg), ob.count, nullptr);
    if (n < ob.count) {
        std::memmove(ob.msgs, ob.msgs + n, (ob.count - n) * sizeof(Msg));
    }
    ob.count -= n;
    return ob.count == 0;
}

// Flushes every outbox of im; closes the ones that emptied.
void outboxes_flush(Thread::Impl &im) {
    uint32_t keep = 0;
    for (uint32_t i = 0; i < im.outbox_used; ++i) {
        Outbox &ob = im.outbox[i];
        if (outbox_flush(ob)) {
            ThreadAccess::impl(ob.dest).senders.fetch_sub(1, std::memory_order_release);
            ob.dest = nullptr;
        } else if (keep != i) {
            im.outbox[keep++] = ob;
        } else {
            ++keep;
        }
    }
    im.outbox_used = keep;
}

}  // namespace

void flush_outboxes(Thread *t) {
    if (t != nullptr && t->impl_->outbox_used != 0) {
        outboxes_flush(*t->impl_);
    }
}

int send_msg(Thread *t, MsgFn fn, void *arg) {
    if (t == nullptr || fn == nullptr) {
        return -EINVAL;
    }
    Msg m{fn, arg};
    Thread *cur = tls_current;
    if (t == cur) {
        if (t->state_.load(std::memory_order_relaxed) == ThreadState::Exited) {
            return -EIO;
        }
        local_push(*t->impl_, m);
        return 0;
    }
    auto &tim = *t->impl_;
    if (cur == nullptr) {
        // Not on a thread (signal handlers' pollers, tests, foreign OS threads): direct.
        if (!sender_enter(tim, t->state_)) {
            return -EIO;
        }
        int rc = rte_ring_mp_enqueue_elem(tim.ring.get(), &m, sizeof(Msg)) == 0 ? 0 : -ENOMEM;
        tim.senders.fetch_sub(1, std::memory_order_release);
        return rc;
    }
    auto &cim = *cur->impl_;
    Outbox *ob = nullptr;
    for (uint32_t i = 0; i < cim.outbox_used; ++i) {
        if (cim.outbox[i].dest == t) {
            ob = &cim.outbox[i];
            break;
        }
    }
    if (ob == nullptr) {
        if (cim.outbox_used == Thread::Impl::kOutboxes) {
            outboxes_flush(cim);
        }
        if (cim.outbox_used == Thread::Impl::kOutboxes) {
            return -ENOMEM;  // every outbox is stuck behind a full ring
        }
        if (!sender_enter(tim, t->state_)) {
            return -EIO;
        }
        ob = &cim.outbox[cim.outbox_used++];
        ob->dest = t;
        ob->count = 0;
    }
    if (ob->count == Outbox::kCapacity && !outbox_flush(*ob) && ob->count == Outbox::kCapacity) {
        return -ENOMEM;
    }
    ob->msgs[ob->count++] = m;
    return 0;
}

int send_fn(Thread *t, std::function<void()> fn) {
    auto *heap = new std::function<void()>(std::move(fn));
    int rc = send_msg(t, run_fn_msg, heap);
    if (rc != 0) {
        delete heap;
    }
    return rc;
}

namespace {

// Runs queued messages; returns how many ran.
uint32_t run_messages(Thread::Impl &im, uint32_t max_msgs) {
    uint32_t done = 0;
    // Self-sent first: they were queued by code this thread already ran.
    size_t n = std::min<size_t>(im.local_count, max_msgs);
    for (size_t i = 0; i < n; ++i) {
        Msg m = im.local[im.local_head];
        im.local_head = (im.local_head + 1) & (im.local.size() - 1);
        --im.local_count;
        m.fn(m.arg);
    }
    done += static_cast<uint32_t>(n);
    Msg batch[kBurst];
    while (done < max_msgs) {
        uint32_t want = std::min(kBurst, max_msgs - done);
        unsigned got =
            rte_ring_sc_dequeue_burst_elem(im.ring.get(), batch, sizeof(Msg), want, nullptr);
        for (unsigned i = 0; i < got; ++i) {
            batch[i].fn(batch[i].arg);
        }
        done += got;
        if (got < want) {
            break;
        }
    }
    return done;
}

void outboxes_drop(Thread::Impl &im) {
    for (uint32_t i = 0; i < im.outbox_used; ++i) {
        FLINT_ERRLOG("dropping %u message(s) to thread '%s'", im.outbox[i].count,
                     im.outbox[i].dest->name().c_str());
        ThreadAccess::impl(im.outbox[i].dest).senders.fetch_sub(1, std::memory_order_release);
    }
    im.outbox_used = 0;
}

void compact_active(Thread::Impl &im) {
    size_t out = 0;
    for (Poller *p : im.active) {
        if (p->state == PollerState::Unregistered) {
            delete p;
        } else if (p->state == PollerState::Paused) {
            p->loc = PollerLoc::Paused;
            im.paused.push_back(p);
        } else {
            im.active[out++] = p;
        }
    }
    im.active.resize(out);
    im.active_dirty = false;
}

// Runs one poller; it may unregister or pause itself, which the caller then handles.
bool run_poller(Poller *p) {
    p->state = PollerState::Running;
    int rc = p->fn(p->arg);
    ++p->run_count;
    if (rc > 0) {
        ++p->busy_count;
        return true;
    }
    return false;
}

bool run_active(Thread::Impl &im) {
    bool busy = false;
    // Index loop: a poller may register another one while we iterate.
    for (size_t i = 0; i < im.active.size(); ++i) {
        Poller *p = im.active[i];
        if (p->state != PollerState::Waiting) {
            continue;
        }
        busy |= run_poller(p);
        if (p->state == PollerState::Running) {
            p->state = PollerState::Waiting;
        }
    }
    if (im.active_dirty) {
        compact_active(im);
    }
    return busy;
}

bool run_timed(Thread::Impl &im, uint64_t now) {
    bool busy = false;
    while (!im.timed.empty() && im.timed.begin()->first <= now) {
        auto node = im.timed.extract(im.timed.begin());
        Poller *p = node.mapped();
        p->loc = PollerLoc::Detached;
        busy |= run_poller(p);
        if (p->state == PollerState::Unregistered) {
            delete p;
            continue;
        }
        if (p->state == PollerState::Paused) {
            p->loc = PollerLoc::Paused;
            im.paused.push_back(p);
            continue;
        }
        p->state = PollerState::Waiting;
        // Reuse the node: no allocation per run.
        node.key() = now + p->period_ticks;
        p->it = im.timed.insert(std::move(node));
        p->loc = PollerLoc::Timed;
    }
    return busy;
}

size_t live_active(const Thread::Impl &im) {
    size_t n = 0;
    for (const Poller *p : im.active) {
        if (p->state != PollerState::Unregistered && p->state != PollerState::Paused) {
            ++n;
        }
    }
    return n;
}

}  // namespace

int Thread::poll(uint32_t max_msgs, uint64_t now) {
    Thread *prev = tls_current;
    tls_current = this;
    uint64_t prev_ticks = detail::tls_poll_ticks;
    detail::tls_poll_ticks = now;
    auto &im = *impl_;
    im.last_now = now;
    uint32_t msgs = run_messages(im, max_msgs);
    stats_.msgs += msgs;
    bool busy = msgs > 0;
    busy |= run_active(im);
    if (!im.timed.empty()) {
        busy |= run_timed(im, now);
    }
    if (im.outbox_used != 0) {
        outboxes_flush(im);
    }
    if (state_.load(std::memory_order_relaxed) == ThreadState::Exiting) {
        bool pollers_done = im.active.empty() && im.timed.empty() && im.paused.empty();
        bool msgs_done =
            im.local_count == 0 && rte_ring_empty(im.ring.get()) && im.outbox_used == 0;
        if (pollers_done && msgs_done && im.channels.empty() && try_exit()) {
            FLINT_DEBUGLOG(thread, "thread '%s' exited", name_.c_str());
        } else if (now >= im.exit_deadline) {
            for (const Poller *p : im.active) {
                FLINT_ERRLOG("thread '%s' exiting with active poller '%s' still registered",
                             name_.c_str(), p->name.c_str());
            }
            for (const auto &[when, p] : im.timed) {
                (void)when;
                FLINT_ERRLOG("thread '%s' exiting with timed poller '%s' still registered",
                             name_.c_str(), p->name.c_str());
            }
            for (const Poller *p : im.paused) {
                FLINT_ERRLOG("thread '%s' exiting with paused poller '%s' still registered",
                             name_.c_str(), p->name.c_str());
            }
            if (!im.channels.empty()) {
                FLINT_ERRLOG("thread '%s' exiting with %zu io_channel(s) still held", name_.c_str(),
                             im.channels.size());
            }
            if (!msgs_done) {
                FLINT_ERRLOG("thread '%s' exiting with %zu message(s) never run", name_.c_str(),
                             im.local_count + rte_ring_count(im.ring.get()));
            }
            FLINT_ERRLOG("thread '%s' timed out while exiting; forcing exit", name_.c_str());
            outboxes_drop(im);
            state_.store(ThreadState::Exited, std::memory_order_seq_cst);
        }
    }
    uint64_t end = util::ticks();
    if (busy) {
        stats_.busy_tsc += end - now;
    } else {
        stats_.idle_tsc += end - now;
    }
    tls_current = prev;
    detail::tls_poll_ticks = prev_ticks;
    return busy ? kBusy : kIdle;
}

bool Thread::try_exit() {
    auto &im = *impl_;
    state_.store(ThreadState::Exited, std::memory_order_seq_cst);
    if (im.senders.load(std::memory_order_seq_cst) == 0 && rte_ring_empty(im.ring.get())) {
        return true;
    }
    // A sender got in first; it will enqueue, and we look again on the next poll.
    state_.store(ThreadState::Exiting, std::memory_order_seq_cst);
    return false;
}

void Thread::exit(uint64_t timeout_ms) {
    ThreadState expected = ThreadState::Running;
    if (!state_.compare_exchange_strong(expected, ThreadState::Exiting)) {
        return;
    }
    uint64_t now = util::ticks();
    impl_->exit_deadline = now + timeout_ms * (util::tick_hz() / 1000);
    FLINT_DEBUGLOG(thread, "thread '%s' exiting", name_.c_str());
}

size_t Thread::active_poller_count() const {
    return live_active(*impl_);
}
size_t Thread::timed_poller_count() const {
    return impl_->timed.size();
}
size_t Thread::paused_poller_count() const {
    size_t n = impl_->paused.size();
    for (const Poller *p : impl_->active) {
        n += p->state == PollerState::Paused ? 1 : 0;
    }
    return n;
}

std::vector<PollerInfo> Thread::pollers(int which) const {
    auto &im = *impl_;
    std::vector<PollerInfo> out;
    auto add = [&](const Poller *p) {
        out.push_back({p->name, p->id, poller_state_name(p->state), p->run_count, p->busy_count,
                       p->period_ticks});
    };
    if (which == 0) {
        for (const Poller *p : im.active) {
            if (p->state != PollerState::Unregistered && p->state != PollerState::Paused) {
                add(p);
            }
        }
    } else if (which == 1) {
        for (const auto &[when, p] : im.timed) {
            (void)when;
            add(p);
        }
    } else {
        for (const Poller *p : im.active) {
            if (p->state == PollerState::Paused) {
                add(p);
            }
        }
        for (const Poller *p : im.paused) {
            add(p);
        }
    }
    return out;
}

size_t thread_count() {
    std::lock_guard lock(global().mu);
    return global().threads.size();
}

namespace {

struct ThreadWalk {
    std::vector<uint64_t> ids;
    size_t next = 0;
    std::function<void(Thread *)> fn;
    std::function<void()> cpl;
    Thread *origin;
};

void thread_walk_step(ThreadWalk *w) {
    while (w->next < w->ids.size()) {
        uint64_t id = w->ids[w->next++];
        std::lock_guard lock(global().mu);
        Thread *t = find_thread_locked(id);
        if (t == nullptr) {
            continue;  // destroyed since the walk began
        }
        int rc = send_fn(t, [w] {
            w->fn(current());
            thread_walk_step(w);
        });
        if (rc == 0) {
            return;
        }
        // An exited thread is skipped; the walk goes on.
    }
    int rc = send_fn(w->origin, [w] {
        w->cpl();
        delete w;
    });
    if (rc != 0) {
        FLINT_ERRLOG("for_each_thread: cannot return to thread '%s'", w->origin->name().c_str());
        delete w;
    }
}

}  // namespace

void for_each_thread(std::function<void(Thread *)> fn, std::function<void()> cpl) {
    auto *w = new ThreadWalk{{}, 0, std::move(fn), std::move(cpl), current()};
    if (w->origin == nullptr) {
        FLINT_ERRLOG("for_each_thread called outside a thread");
        delete w;
        return;
    }
    {
        std::lock_guard lock(global().mu);
        for (Thread *t : global().threads) {
            w->ids.push_back(t->id());
        }
    }
    thread_walk_step(w);
}

Poller *poller_register(PollerFn fn, void *arg, uint64_t period_us, const char *name) {
    Thread *t = tls_current;
    if (t == nullptr) {
        FLINT_ERRLOG("poller '%s' registered outside a thread", name);
        return nullptr;
    }
    auto &im = ThreadAccess::impl(t);
    auto *p = new Poller{};
    p->fn = fn;
    p->arg = arg;
    p->period_ticks = period_us == 0 ? 0 : std::max<uint64_t>(1, util::us_to_ticks(period_us));
    p->name = name;
    p->id = im.next_poller_id++;
    p->thread = t;
    if (p->period_ticks == 0) {
        p->loc = PollerLoc::Active;
        im.active.push_back(p);
    } else {
        uint64_t now = im.last_now != 0 ? im.last_now : util::ticks();
        p->loc = PollerLoc::Timed;
        p->it = im.timed.emplace(now + p->period_ticks, p);
    }
    return p;
}

void poller_unregister(Poller **pp) {
    if (pp == nullptr || *pp == nullptr) {
        return;
    }
    Poller *p = *pp;
    *pp = nullptr;
    auto &im = ThreadAccess::impl(p->thread);
    if (p->thread != tls_current) {
        FLINT_ERRLOG("poller '%s' unregistered from another thread", p->name.c_str());
    }
    if (p->state == PollerState::Running) {
        // From inside itself: the loop that runs it frees it.
        p->state = PollerState::Unregistered;
        if (p->loc == PollerLoc::Active) {
            im.active_dirty = true;
        }
        return;
    }
    switch (p->loc) {
        case PollerLoc::Active:
            p->state = PollerState::Unregistered;
            im.active_dirty = true;
            break;
        case PollerLoc::Timed:
            im.timed.erase(p->it);
            delete p;
            break;
        case PollerLoc::Paused:
            std::erase(im.paused, p);
            delete p;
            break;
        case PollerLoc::Detached:
            p->state = PollerState::Unregistered;
            break;
    }
}

void poller_pause(Poller *p) {
    if (p == nullptr || p->state == PollerState::Paused || p->state == PollerState::Unregistered) {
        return;
    }
    auto &im = ThreadAccess::impl(p->thread);
    if (p->state == PollerState::Running || p->loc == PollerLoc::Active) {
        p->state = PollerState::Paused;
        if (p->loc == PollerLoc::Active) {
            im.active_dirty = true;
        }
        return;
    }
    if (p->loc == PollerLoc::Timed) {
        im.timed.erase(p->it);
        p->loc = PollerLoc::Paused;
        im.paused.push_back(p);
    }
    p->state = PollerState::Paused;
}

void poller_resume(Poller *p) {
    if (p == nullptr || p->state != PollerState::Paused) {
        return;
    }
    auto &im = ThreadAccess::impl(p->thread);
    p->state = PollerState::Waiting;
    if (p->loc != PollerLoc::Paused) {
        return;  // still in its list (active, or running detached): it just runs again
    }
    std::erase(im.paused, p);
    if (p->period_ticks == 0) {
        p->loc = PollerLoc::Active;
        im.active.push_back(p);
    } else {
        uint64_t now = im.last_now != 0 ? im.last_now : util::ticks();
        p->loc = PollerLoc::Timed;
        p->it = im.timed.emplace(now + p->period_ticks, p);
    }
}

}  // namespace flint::thread
