#include "flint/util/time.h"

#include <chrono>
#include <thread>

namespace flint::util {

uint64_t tick_hz() {
#if defined(__x86_64__)
    // Measured against the steady clock; invariant TSC is assumed, as DPDK and SPDK do.
    static const uint64_t hz = [] {
        using clock = std::chrono::steady_clock;
        auto t0 = clock::now();
        uint64_t c0 = ticks();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto t1 = clock::now();
        uint64_t c1 = ticks();
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
        uint64_t r =
            static_cast<uint64_t>(static_cast<double>(c1 - c0) * 1e9 / static_cast<double>(ns));
        // Round to 1 MHz so repeated runs report the same rate.
        return (r + 500000) / 1000000 * 1000000;
    }();
    return hz;
#else
    return 1000000000ULL;
#endif
}

}  // namespace flint::util
