#include "flint/event/reactor.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "flint/env/env.h"
#include "flint/util/log.h"
#include "flint/util/time.h"

FLINT_LOG_FLAG(reactor);

namespace flint::event {
namespace {

constexpr uint32_t kMsgBatch = 128;

std::vector<std::unique_ptr<Reactor>> g_reactors;
std::atomic<uint32_t> g_next{0};

Reactor *pick(const util::CpuSet &mask) {
    std::vector<Reactor *> allowed;
    for (auto &r : g_reactors) {
        if (mask.empty() || mask.contains(r->lcore())) {
            allowed.push_back(r.get());
        }
    }
    if (allowed.empty()) {
        return nullptr;
    }
    return allowed[g_next.fetch_add(1, std::memory_order_relaxed) % allowed.size()];
}

}  // namespace

void Reactor::add_thread(thread::Thread *t) {
    t->sched_ctx = this;
    std::lock_guard lock(incoming_mu_);
    incoming_.push_back(t);
    has_incoming_.store(true, std::memory_order_release);
}

void Reactor::take_incoming() {
    std::lock_guard lock(incoming_mu_);
    threads_.insert(threads_.end(), incoming_.begin(), incoming_.end());
    incoming_.clear();
    has_incoming_.store(false, std::memory_order_relaxed);
}

void Reactor::run() {
    tid_.store(static_cast<int>(syscall(SYS_gettid)), std::memory_order_relaxed);
    FLINT_NOTICELOG("Reactor started on core %u", lcore_);
    bool stopping = false;
    uint64_t busy = 0, idle = 0, iters = 0;
    uint64_t last = util::ticks();
    while (true) {
        if (has_incoming_.load(std::memory_order_acquire)) {
            take_incoming();
        }
        if (!stopping && stop_.load(std::memory_order_acquire)) {
            stopping = true;
            for (thread::Thread *t : threads_) {
                thread::set_current(t);
                t->exit();
                thread::set_current(nullptr);
            }
        }
        bool any_exited = false;
        bool was_busy = false;
        for (thread::Thread *t : threads_) {
            was_busy |= t->poll(kMsgBatch, util::ticks()) == thread::kBusy;
            any_exited |= t->exited();
        }
        if (any_exited) {
            std::erase_if(threads_, [](thread::Thread *t) {
                if (!t->exited()) {
                    return false;
                }
                FLINT_DEBUGLOG(reactor, "destroying exited thread '%s'", t->name().c_str());
                thread::Thread::destroy(t);
                return true;
            });
        }
        uint64_t now = util::ticks();
        (was_busy ? busy : idle) += now - last;
        last = now;
        ++iters;
        // Publishing stats costs stores; do it every 256 loops.
        if ((iters & 0xff) == 0) {
            busy_tsc_.store(busy, std::memory_order_relaxed);
            idle_tsc_.store(idle, std::memory_order_relaxed);
            iterations_.store(iters, std::memory_order_relaxed);
        }
        if (stopping && threads_.empty() && !has_incoming_.load(std::memory_order_acquire)) {
            break;
        }
        if (stopping && stop_.load(std::memory_order_acquire)) {
            // Threads created during shutdown are asked to exit as well.
            for (thread::Thread *t : threads_) {
                if (t->state() == thread::ThreadState::Running) {
                    thread::set_current(t);
                    t->exit();
                    thread::set_current(nullptr);
                }
            }
        }
    }
    busy_tsc_.store(busy, std::memory_order_relaxed);
    idle_tsc_.store(idle, std::memory_order_relaxed);
    iterations_.store(iters, std::memory_order_relaxed);
    FLINT_DEBUGLOG(reactor, "reactor on core %u stopped", lcore_);
}

int reactors_init() {
    if (!env::initialized()) {
        return -EINVAL;
    }
    g_reactors.clear();
    for (uint32_t core : env::cores().cores()) {
        g_reactors.push_back(std::make_unique<Reactor>(core));
    }
    thread::lib_init({.schedule = [](thread::Thread *t) {
        Reactor *r = pick(t->cpumask());
        if (r == nullptr) {
            return -EINVAL;
        }
        r->add_thread(t);
        return 0;
    }});
    FLINT_NOTICELOG("Total cores available: %zu", g_reactors.size());
    return 0;
}

void reactors_start() {
    uint32_t main = env::main_core();
    Reactor *main_reactor = nullptr;
    for (auto &r : g_reactors) {
        if (r->lcore() == main) {
            main_reactor = r.get();
            continue;
        }
        Reactor *rp = r.get();
        int rc = env::launch_pinned(r->lcore(), [rp] {
            rp->run();
            return 0;
        });
        if (rc != 0) {
            FLINT_ERRLOG("cannot launch the reactor on core %u (%d)", r->lcore(), rc);
        }
    }
    if (main_reactor != nullptr) {
        main_reactor->run();
    }
    env::wait_all();
}

void reactors_stop() {
    for (auto &r : g_reactors) {
        r->request_stop();
    }
}

void reactors_fini() {
    thread::lib_fini();
    g_reactors.clear();
}

const std::vector<std::unique_ptr<Reactor>> &reactors() {
    return g_reactors;
}

Reactor *reactor_of(thread::Thread *t) {
    return static_cast<Reactor *>(t->sched_ctx);
}

}  // namespace flint::event
