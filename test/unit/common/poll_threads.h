#pragma once
// Drives flint threads from a test's own OS thread, as their reactors would.

#include <chrono>
#include <initializer_list>

#include "flint/thread/thread.h"
#include "flint/util/time.h"

namespace flint::test {

// Polls each thread of ts that is set and has not exited, once per round, with no thread
// current during a poll; `current` is current afterwards.
template <class Threads>
void poll_threads(const Threads &ts, thread::Thread *current, int rounds) {
    for (int i = 0; i < rounds; ++i) {
        for (thread::Thread *t : ts) {
            if (t != nullptr && !t->exited()) {
                thread::set_current(nullptr);
                t->poll(64, util::ticks());
            }
        }
        thread::set_current(current);
    }
}
inline void poll_threads(std::initializer_list<thread::Thread *> ts, thread::Thread *current,
                         int rounds) {
    poll_threads<std::initializer_list<thread::Thread *>>(ts, current, rounds);
}

// Exits each thread of ts that is set, polling it until it has exited, and destroys it.
template <class Threads>
void exit_threads(const Threads &ts) {
    for (thread::Thread *t : ts) {
        if (t == nullptr) {
            continue;
        }
        thread::set_current(t);
        t->exit();
        thread::set_current(nullptr);
        while (!t->exited()) {
            t->poll(64, util::ticks());
        }
        thread::Thread::destroy(t);
    }
}
inline void exit_threads(std::initializer_list<thread::Thread *> ts) {
    exit_threads<std::initializer_list<thread::Thread *>>(ts);
}

// Calls step() until pred() holds, for at most `limit` (timed pollers and the kernel need
// real time to pass). False if pred() never held.
template <class Step, class Pred>
bool step_until(Step step, Pred pred, std::chrono::seconds limit = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        step();
    }
    return true;
}

}  // namespace flint::test
