// reactor_perf: throughput of the reactor and message path on pinned cores.
//   -w cross : each core's thread keeps -q messages hopping to the next core's thread
//              (SPDK event_perf); reports messages handled per second per core.
//   -w self  : each core's thread keeps -q messages in flight to itself (SPDK reactor_perf).
//   -w empty : reactors with no threads; reports loop iterations per second per core.
//   -u       : flush after every send (no outbox batching): the baseline for -w cross.

#include <getopt.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "flint/env/env.h"
#include "flint/event/reactor.h"
#include "flint/util/log.h"

using namespace flint;

namespace {

struct alignas(64) PerfThread {
    thread::Thread *t = nullptr;
    PerfThread *next = nullptr;
    std::atomic<uint64_t> count{0};
};

std::atomic<bool> g_stop{false};
std::string g_mode = "cross";
bool g_unbatched = false;

void on_msg(void *arg) {
    auto *self = static_cast<PerfThread *>(arg);
    // Single writer: a plain increment, published for the timer thread.
    self->count.store(self->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (g_stop.load(std::memory_order_relaxed)) {
        return;
    }
    PerfThread *to = g_mode == "self" ? self : self->next;
    thread::send_msg(to->t, on_msg, to);
    if (g_unbatched) {
        // Baseline: one ring operation per message, as an unbatched design pays.
        thread::flush_outboxes(thread::current());
    }
}

void usage(const char *prog) {
    std::fprintf(stderr, "usage: %s [-m mask] [-t seconds] [-q depth] [-w cross|self|empty] [-u]\n",
                 prog);
}

}  // namespace

int main(int argc, char **argv) {
    std::string mask = "0x3";
    int seconds = 5;
    int depth = 128;
    int ch;
    while ((ch = getopt(argc, argv, "m:t:q:w:uh")) != -1) {
        switch (ch) {
            case 'm':
                mask = optarg;
                break;
            case 't':
                seconds = std::atoi(optarg);
                break;
            case 'q':
                depth = std::atoi(optarg);
                break;
            case 'w':
                g_mode = optarg;
                break;
            case 'u':
                g_unbatched = true;
                break;
            default:
                usage(argv[0]);
                return 1;
        }
    }
    if (seconds <= 0 || depth <= 0 ||
        (g_mode != "cross" && g_mode != "self" && g_mode != "empty")) {
        usage(argv[0]);
        return 1;
    }
    log::set_level(log::Level::Warn);
    env::Options eo;
    eo.name = "reactor_perf";
    eo.core_mask = mask;
    std::string err;
    if (env::init(eo, &err) != 0) {
        std::fprintf(stderr, "env init failed: %s\n", err.c_str());
        return 1;
    }
    event::reactors_init();
    std::vector<uint32_t> cores = env::cores().cores();
    std::vector<PerfThread> perf(g_mode == "empty" ? 0 : cores.size());
    for (size_t i = 0; i < perf.size(); ++i) {
        util::CpuSet one;
        one.set(cores[i]);
        perf[i].t = thread::create("perf_" + std::to_string(cores[i]), &one);
        perf[i].next = &perf[(i + 1) % perf.size()];
    }
    for (auto &p : perf) {
        PerfThread *to = g_mode == "self" ? &p : p.next;
        for (int i = 0; i < depth; ++i) {
            thread::send_msg(to->t, on_msg, to);
        }
    }
    std::vector<uint64_t> start(cores.size()), end(cores.size());
    auto sample = [&](std::vector<uint64_t> &out) {
        for (size_t i = 0; i < cores.size(); ++i) {
            out[i] = g_mode == "empty" ? event::reactors()[i]->iterations()
                                       : perf[i].count.load(std::memory_order_relaxed);
        }
    };
    double elapsed = 0;
    std::thread timer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // warm-up
        sample(start);
        auto t0 = std::chrono::steady_clock::now();
        std::this_thread::sleep_for(std::chrono::seconds(seconds));
        sample(end);
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        g_stop = true;
        event::reactors_stop();
    });
    event::reactors_start();
    timer.join();
    const char *unit = g_mode == "empty" ? "iterations" : "messages";
    double total = 0;
    for (size_t i = 0; i < cores.size(); ++i) {
        double rate = static_cast<double>(end[i] - start[i]) / elapsed;
        total += rate;
        std::printf("core %u: %.0f %s/s\n", cores[i], rate, unit);
    }
    std::printf("mode %s%s depth %d: total %.0f %s/s, %.0f per core\n", g_mode.c_str(),
                g_unbatched ? " unbatched" : "", depth, total, unit,
                total / static_cast<double>(cores.size()));
    event::reactors_fini();
    env::fini();
    return 0;
}
