#pragma once
// Reactors: one pinned OS thread per core in the mask, each polling the Threads placed on it.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "flint/thread/thread.h"
#include "flint/util/cpuset.h"

namespace flint::event {

class Reactor {
public:
    explicit Reactor(uint32_t lcore) : lcore_(lcore) {}

    uint32_t lcore() const { return lcore_; }
    int tid() const { return tid_.load(std::memory_order_relaxed); }
    uint64_t busy_tsc() const { return busy_tsc_.load(std::memory_order_relaxed); }
    uint64_t idle_tsc() const { return idle_tsc_.load(std::memory_order_relaxed); }
    uint64_t iterations() const { return iterations_.load(std::memory_order_relaxed); }

    // Hands a thread to this reactor; safe from any OS thread.
    void add_thread(thread::Thread *t);
    // Polls until stop is requested and every thread on it has exited and been destroyed.
    void run();
    void request_stop() { stop_.store(true, std::memory_order_release); }

private:
    void take_incoming();

    uint32_t lcore_;
    std::atomic<int> tid_{0};
    std::atomic<uint64_t> busy_tsc_{0};
    std::atomic<uint64_t> idle_tsc_{0};
    std::atomic<uint64_t> iterations_{0};
    std::atomic<bool> stop_{false};
    std::atomic<bool> has_incoming_{false};
    std::mutex incoming_mu_;  // control path only: new threads arrive rarely
    std::vector<thread::Thread *> incoming_;
    std::vector<thread::Thread *> threads_;
};

// Creates one reactor per core of the initialised env and installs the thread scheduler:
// a new thread goes to the reactors its cpumask allows, round robin.
int reactors_init();
// Runs every reactor; the calling (main-core) thread runs the main reactor. Returns when
// reactors_stop() was called and every thread has exited.
void reactors_start();
// Asks every reactor to exit its threads and return. Safe from any thread.
void reactors_stop();
void reactors_fini();
const std::vector<std::unique_ptr<Reactor>> &reactors();
// The reactor a thread runs on (nullptr if none).
Reactor *reactor_of(thread::Thread *t);

}  // namespace flint::event
