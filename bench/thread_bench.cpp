// The message path without reactors: send + poll on one OS thread (self and ring paths).
#include <benchmark/benchmark.h>

#include "flint/thread/thread.h"
#include "flint/util/time.h"

using namespace flint;

namespace {

void nop(void *) {}

void teardown(thread::Thread *t) {
    thread::set_current(t);
    t->exit();
    thread::set_current(nullptr);
    t->poll(32, util::ticks());
    thread::Thread::destroy(t);
    thread::lib_fini();
}

// Messages a thread sends itself: the local-queue fast path.
void BM_SelfMessage(benchmark::State &state) {
    thread::lib_init({});
    thread::Thread *t = thread::create("bench");
    const int batch = static_cast<int>(state.range(0));
    for (auto _ : state) {
        thread::set_current(t);
        for (int i = 0; i < batch; ++i) {
            thread::send_msg(t, nop, nullptr);
        }
        thread::set_current(nullptr);
        t->poll(static_cast<uint32_t>(batch), util::ticks());
    }
    state.SetItemsProcessed(state.iterations() * batch);
    teardown(t);
}
BENCHMARK(BM_SelfMessage)->Arg(32)->Arg(128);

// Messages from another thread: the multi-producer ring path (same OS thread, no contention).
void BM_RingMessage(benchmark::State &state) {
    thread::lib_init({});
    thread::Thread *t = thread::create("bench");
    const int batch = static_cast<int>(state.range(0));
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            thread::send_msg(t, nop, nullptr);
        }
        t->poll(static_cast<uint32_t>(batch), util::ticks());
    }
    state.SetItemsProcessed(state.iterations() * batch);
    teardown(t);
}
BENCHMARK(BM_RingMessage)->Arg(32)->Arg(128);

// An idle thread's poll: the per-iteration cost a reactor pays for each thread.
void BM_IdlePoll(benchmark::State &state) {
    thread::lib_init({});
    thread::Thread *t = thread::create("bench");
    for (auto _ : state) {
        benchmark::DoNotOptimize(t->poll(32, util::ticks()));
    }
    teardown(t);
}
BENCHMARK(BM_IdlePoll);

}  // namespace

BENCHMARK_MAIN();
