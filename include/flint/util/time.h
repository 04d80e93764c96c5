#pragma once
// A cheap monotonic tick counter (the TSC on x86) and its rate.

#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#else
#include <chrono>
#endif

namespace flint::util {

inline uint64_t ticks() {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

// Ticks per second; measured once (about 50 ms) on first call, then cached.
uint64_t tick_hz();

inline uint64_t us_to_ticks(uint64_t us) {
    return us * (tick_hz() / 1000000);
}

}  // namespace flint::util
