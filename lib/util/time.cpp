#include "flint/util/time.h"

#include <chrono>
#include <cstdint>
#include <thread>

namespace flint::util {

uint64_t tick_hz() {
#if defined(__x86_64__)
    // Measured against the steady clock; invariant TSC is assumed, as DPDK and SPDK do.
    // Each end pairs a clock read with the TSC reads around it and keeps the tightest of
    // a few tries, so a preemption between the two reads cannot skew the rate.
    static const uint64_t hz = [] {
        using clock = std::chrono::steady_clock;
        struct Stamp {
            clock::time_point t;
            uint64_t c;
        };
        auto stamp = [] {
            Stamp best{};
            uint64_t best_gap = UINT64_MAX;
            for (int i = 0; i < 16; ++i) {
                uint64_t a = ticks();
                auto t = clock::now();
                uint64_t b = ticks();
                if (b - a < best_gap) {
                    best_gap = b - a;
                    best = {t, a + (b - a) / 2};
                }
            }
            return best;
        };
        Stamp s0 = stamp();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        Stamp s1 = stamp();
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(s1.t - s0.t).count();
        uint64_t r =
            static_cast<uint64_t>(static_cast<double>(s1.c - s0.c) * 1e9 / static_cast<double>(ns));
        // Round to 1 MHz so repeated runs report the same rate.
        return (r + 500000) / 1000000 * 1000000;
    }();
    return hz;
#else
    return 1000000000ULL;
#endif
}

}  // namespace flint::util
