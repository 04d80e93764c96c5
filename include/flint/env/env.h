#pragma once
// The environment layer: the only code in Flint that calls DPDK.
// Initialises DPDK's EAL from a core mask, hands out DMA-safe memory, and launches one
// pinned OS thread per core. One init per process (a DPDK limit).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "flint/util/cpuset.h"

namespace flint::env {

struct Options {
    std::string name = "flint";       // used in the EAL file prefix
    std::string core_mask = "0x1";    // any form CpuSet::parse accepts
    uint32_t main_core = UINT32_MAX;  // UINT32_MAX: the lowest core of the mask
    size_t mem_size_mb = 0;           // -s: 0 lets DPDK pick (hugepages) or 256 MiB (no-huge)
    bool no_huge = false;             // --no-huge: force anonymous memory
    bool no_pci = true;               // no PCI bus scan until a driver needs one
};

// Initialises the EAL. Uses hugepages when any are free; otherwise (or with no_huge) falls back
// to anonymous memory and logs a warning saying so. Each process gets a unique file prefix and
// in-memory mode, so concurrent processes never collide and nothing is left in /var/run.
// Returns 0, or a negative errno with *error describing the failure. Call once per process.
int init(const Options &opts, std::string *error);
// Tears the EAL down after all launched threads have returned. Safe to call if init failed.
void fini();
bool initialized();
// True if init fell back to (or was told to use) anonymous memory.
bool using_no_huge();

// The cores the EAL runs on, ascending, and the main (calling) core.
const util::CpuSet &cores();
uint32_t main_core();
// The core the calling thread is pinned to, or UINT32_MAX for a non-EAL thread.
uint32_t current_core();

// Runs fn on the given non-main core's pinned thread. Returns 0 or a negative errno
// (-EINVAL for the main core or a core outside the mask, -EBUSY if it is already running).
int launch_pinned(uint32_t core, std::function<int()> fn);
// Waits for every launched function to return.
void wait_all();

// DMA-safe zeroed memory. align must be a power of two (0 means cache line). Returns nullptr
// when memory is exhausted. Memory must go back through dma_free.
void *dma_zmalloc(size_t size, size_t align);
void dma_free(void *buf);
// The IO virtual address of buf, or UINT64_MAX if it is not DMA memory.
uint64_t vtophys(const void *buf);

struct DmaDeleter {
    void operator()(void *p) const { dma_free(p); }
};
using DmaPtr = std::unique_ptr<void, DmaDeleter>;

// A fixed pool of equal-sized DMA-safe elements with per-core caches.
class Mempool {
public:
    // Returns nullptr (and logs why) if the pool cannot be created.
    static std::unique_ptr<Mempool> create(const std::string &name, size_t count, size_t elem_size,
                                           size_t cache_size);
    ~Mempool();
    Mempool(const Mempool &) = delete;
    Mempool &operator=(const Mempool &) = delete;

    // nullptr when empty; never blocks.
    void *get();
    void put(void *elem);
    size_t available() const;
    size_t size() const;

private:
    explicit Mempool(void *pool) : pool_(pool) {}
    void *pool_;
};

}  // namespace flint::env
