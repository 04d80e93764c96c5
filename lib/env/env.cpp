// The env layer over DPDK 22.11. Nothing else in Flint includes DPDK headers.

#include "flint/env/env.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <system_error>
#include <vector>

#include "flint/util/log.h"

FLINT_LOG_FLAG(env);

namespace flint::env {
namespace {

constexpr size_t kNoHugeDefaultMb = 512;  // room for the default iobuf pools (196 MiB)

std::mutex g_init_mutex;
// Set once rte_eal_init has been attempted past our own validation: DPDK cannot re-init.
bool g_eal_attempted = false;
std::atomic<bool> g_initialized{false};
bool g_no_huge = false;
util::CpuSet g_cores;
uint32_t g_main_core = UINT32_MAX;
// DPDK's per-process runtime directory, if removing it right after init failed.
std::string g_runtime_dir;
std::atomic<uint32_t> g_pool_seq{0};
// DPDK's lcore hand-off happens in an uninstrumented library, so ThreadSanitizer cannot see
// it; these counters repeat it in a form it can (launch -> function -> wait_all).
std::atomic<uint32_t> g_handoff[RTE_MAX_LCORE];

// Total free hugepages of every size; 0 if none or unreadable.
uint64_t free_hugepages() {
    uint64_t total = 0;
    std::error_code ec;
    bool found = false;
    for (const auto &entry : std::filesystem::directory_iterator("/sys/kernel/mm/hugepages", ec)) {
        std::ifstream in(entry.path() / "free_hugepages");
        uint64_t n = 0;
        if (in >> n) {
            total += n;
            found = true;
        }
    }
    if (found) {
        return total;
    }
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    uint64_t n = 0;
    while (meminfo >> key) {
        if (key == "HugePages_Free:") {
            return meminfo >> n ? n : 0;
        }
        meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return 0;
}

// The file prefix becomes a directory name, so keep it to safe characters.
std::string file_prefix(const std::string &name) {
    std::string out;
    for (char c : name.substr(0, 32)) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        out += ok ? c : '_';
    }
    if (out.empty()) {
        out = "flint";
    }
    return out + "_" + std::to_string(getpid());
}

// DPDK prints its usage text or panics in a worker thread on cores it cannot use, so reject
// them here with a clear message instead.
bool check_cores(const util::CpuSet &cores, const std::string &mask, std::string *error) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    bool have_affinity = sched_getaffinity(0, sizeof(allowed), &allowed) == 0;
    for (uint32_t core : cores.cores()) {
        if (core >= RTE_MAX_LCORE) {
            *error = "core " + std::to_string(core) + " in core mask '" + mask +
                     "' exceeds the DPDK limit of " + std::to_string(RTE_MAX_LCORE) + " cores";
            return false;
        }
        std::error_code ec;
        std::string topo =
            "/sys/devices/system/cpu/cpu" + std::to_string(core) + "/topology/core_id";
        bool present = std::filesystem::exists(topo, ec);
        bool usable = !have_affinity || (core < CPU_SETSIZE && CPU_ISSET(core, &allowed));
        if (!present || !usable) {
            *error = "core " + std::to_string(core) + " in core mask '" + mask + "' is " +
                     (present ? "not in this process's CPU affinity" : "not present");
            return false;
        }
    }
    return true;
}

std::string core_list(const util::CpuSet &cores) {
    std::string out;
    for (uint32_t core : cores.cores()) {
        if (!out.empty()) {
            out += ',';
        }
        out += std::to_string(core);
    }
    return out;
}

// Owns the heap copy of the function; runs on the pinned lcore thread.
int trampoline(void *arg) {
    unsigned core = rte_lcore_id();
    g_handoff[core].load(std::memory_order_acquire);
    std::unique_ptr<std::function<int()>> fn(static_cast<std::function<int()> *>(arg));
    int rc = -ECANCELED;
    // An exception must not unwind through DPDK's C frames.
    try {
        rc = (*fn)();
    } catch (const std::exception &e) {
        FLINT_ERRLOG("function on core %u threw: %s", core, e.what());
    } catch (...) {
        FLINT_ERRLOG("function on core %u threw a non-std exception", core);
    }
    fn.reset();
    g_handoff[core].fetch_add(1, std::memory_order_release);
    return rc;
}

}  // namespace

int init(const Options &opts, std::string *error) {
    std::string scratch;
    if (error == nullptr) {
        error = &scratch;
    }
    std::lock_guard lock(g_init_mutex);
    if (g_initialized.load() || g_eal_attempted) {
        *error = g_initialized.load()
                     ? "the EAL is already initialised (DPDK allows one init per process)"
                     : "the EAL was already initialised or failed to (DPDK allows one init "
                       "per process)";
        return -EALREADY;
    }

    // Validate everything before rte_eal_init: a failed EAL init cannot be retried.
    util::CpuSet cores;
    std::string why;
    if (!cores.parse(opts.core_mask, &why)) {
        *error = "invalid core mask '" + opts.core_mask + "': " + why;
        return -EINVAL;
    }
    if (cores.empty()) {
        *error = "core mask '" + opts.core_mask + "' selects no cores";
        return -EINVAL;
    }
    if (!check_cores(cores, opts.core_mask, error)) {
        return -EINVAL;
    }
    uint32_t main_lcore = opts.main_core == UINT32_MAX ? cores.first() : opts.main_core;
    if (!cores.contains(main_lcore)) {
        *error = "main core " + std::to_string(main_lcore) + " is not in core mask '" +
                 opts.core_mask + "'";
        return -EINVAL;
    }

    bool no_huge = opts.no_huge;
    size_t mem_mb = opts.mem_size_mb;
    if (!no_huge && free_hugepages() == 0) {
        no_huge = true;
        FLINT_WARNLOG(
            "no free hugepages: falling back to anonymous memory (%zu MiB), which is not "
            "DMA-safe for real devices",
            mem_mb ? mem_mb : kNoHugeDefaultMb);
    } else if (no_huge) {
        FLINT_WARNLOG(
            "no_huge requested: using anonymous memory (%zu MiB), which is not DMA-safe for "
            "real devices",
            mem_mb ? mem_mb : kNoHugeDefaultMb);
    }
    if (no_huge && mem_mb == 0) {
        mem_mb = kNoHugeDefaultMb;
    }

    std::string prefix = file_prefix(opts.name);
    std::vector<std::string> args = {
        opts.name.empty() ? "flint" : opts.name,
        "-l",
        core_list(cores),
        "--main-lcore=" + std::to_string(main_lcore),
        "--file-prefix=" + prefix,
        "--no-telemetry",
        // DPDK logs INFO lines on every init; keep them unless env debugging is on.
        g_flint_log_flag_env.enabled() ? "--log-level=*:info" : "--log-level=*:error",
    };
    // Debian's shared DPDK also dlopens every driver in RTE_EAL_PMD_PATH (~130 libraries,
    // ~50 ms, silent at this log level). The path is compiled in and -d only adds to it, so
    // it stays; the ring mempool driver that Mempool needs is one of those plugins.
    if (no_huge) {
        // --no-huge implies legacy memory, which 22.11 rejects with --in-memory;
        // --no-shconf is the part of --in-memory that still applies.
        args.insert(args.end(), {"--no-huge", "--no-shconf"});
    } else {
        args.emplace_back("--in-memory");
    }
    if (mem_mb > 0) {
        args.insert(args.end(), {"-m", std::to_string(mem_mb)});
    }
    if (opts.no_pci) {
        args.emplace_back("--no-pci");
    }

    // DPDK may keep pointers into argv, so the strings live for the whole process.
    static std::vector<std::string> s_args;
    static std::vector<char *> s_argv;
    s_args = std::move(args);
    s_argv.clear();
    std::string joined;
    for (auto &a : s_args) {
        s_argv.push_back(a.data());
        joined += a + " ";
    }
    s_argv.push_back(nullptr);
    FLINT_DEBUGLOG(env, "rte_eal_init: %s", joined.c_str());

    g_eal_attempted = true;
    int rc = rte_eal_init(static_cast<int>(s_args.size()), s_argv.data());
    const char *runtime_dir = rte_eal_get_runtime_dir();
    std::string dir = runtime_dir ? runtime_dir : "";
    bool own_dir = dir.size() > prefix.size() &&
                   dir.compare(dir.size() - prefix.size(), prefix.size(), prefix) == 0;
    if (rc < 0) {
        int err = rte_errno ? rte_errno : EIO;
        *error = std::string("rte_eal_init failed: ") + rte_strerror(err);
        if (own_dir) {
            rmdir(dir.c_str());
        }
        return -err;
    }

    // Nothing uses the directory after init in in-memory/no-shconf mode, so remove it now
    // and a killed process leaves nothing behind; if DPDK did put files in it, try in fini.
    g_runtime_dir = own_dir && rmdir(dir.c_str()) != 0 ? dir : "";
    g_cores = cores;
    g_main_core = main_lcore;
    g_no_huge = no_huge;
    g_initialized.store(true);
    FLINT_NOTICELOG("EAL initialised on cores %s, main core %u%s", cores.to_list().c_str(),
                    main_lcore, no_huge ? " (no hugepages)" : "");
    return 0;
}

void fini() {
    std::lock_guard lock(g_init_mutex);
    if (!g_initialized.load()) {
        return;
    }
    uint32_t self = current_core();
    if (self != UINT32_MAX && self != g_main_core) {
        FLINT_ERRLOG("fini called on worker core %u; only the main core may tear down", self);
        return;
    }
    // Cleanup frees memory that running lcore functions may still use.
    wait_all();
    g_initialized.store(false);
    rte_eal_cleanup();
    if (!g_runtime_dir.empty()) {
        rmdir(g_runtime_dir.c_str());
        g_runtime_dir.clear();
    }
    g_cores = util::CpuSet();
    g_main_core = UINT32_MAX;
}

bool initialized() {
    return g_initialized.load();
}

bool using_no_huge() {
    return g_initialized.load() && g_no_huge;
}

const util::CpuSet &cores() {
    return g_cores;
}

uint32_t main_core() {
    return g_main_core;
}

uint32_t current_core() {
    // DPDK leaves the lcore id in thread-local storage after cleanup.
    if (!g_initialized.load(std::memory_order_relaxed)) {
        return UINT32_MAX;
    }
    unsigned id = rte_lcore_id();
    return id == LCORE_ID_ANY ? UINT32_MAX : id;
}

int launch_pinned(uint32_t core, std::function<int()> fn) {
    if (!g_initialized.load() || !g_cores.contains(core) || core == g_main_core || !fn) {
        return -EINVAL;
    }
    auto *heap = new std::function<int()>(std::move(fn));
    g_handoff[core].fetch_add(1, std::memory_order_release);
    int rc = rte_eal_remote_launch(trampoline, heap, core);
    if (rc != 0) {
        delete heap;
        return rc < 0 ? rc : -rc;
    }
    return 0;
}

void wait_all() {
    if (!g_initialized.load()) {
        return;
    }
    uint32_t self = current_core();
    // A worker waiting for all workers would wait for itself forever.
    if (self != UINT32_MAX && self != g_main_core) {
        FLINT_ERRLOG("wait_all called on worker core %u; only the main core may wait", self);
        return;
    }
    rte_eal_mp_wait_lcore();
    for (uint32_t core : g_cores.cores()) {
        g_handoff[core].load(std::memory_order_acquire);
    }
}

void *dma_zmalloc(size_t size, size_t align) {
    if (!g_initialized.load() || size == 0 || (align & (align - 1)) != 0 || align > UINT32_MAX) {
        return nullptr;
    }
    return rte_zmalloc(nullptr, size, static_cast<unsigned>(align));
}

void dma_free(void *buf) {
    if (buf != nullptr) {
        rte_free(buf);
    }
}

uint64_t vtophys(const void *buf) {
    if (!g_initialized.load() || buf == nullptr) {
        return UINT64_MAX;
    }
    // Looks the address up in DPDK's memseg lists rather than rte_malloc_virt2iova, which
    // only accepts the start of an rte_malloc block and reads the bytes before any pointer.
    const rte_memseg *ms = rte_mem_virt2memseg(buf, nullptr);
    if (ms == nullptr || ms->iova == RTE_BAD_IOVA) {
        return UINT64_MAX;
    }
    auto offset = reinterpret_cast<uintptr_t>(buf) - reinterpret_cast<uintptr_t>(ms->addr);
    return ms->iova + offset;
}

std::unique_ptr<Mempool> Mempool::create(const std::string &name, size_t count, size_t elem_size,
                                         size_t cache_size) {
    if (!g_initialized.load()) {
        FLINT_ERRLOG("mempool %s: the EAL is not initialised", name.c_str());
        return nullptr;
    }
    if (count == 0 || count > UINT32_MAX || elem_size == 0 || elem_size > UINT32_MAX) {
        FLINT_ERRLOG("mempool %s: invalid count %zu or element size %zu", name.c_str(), count,
                     elem_size);
        return nullptr;
    }
    // DPDK rejects a cache above its maximum or one whose flush threshold (1.5x) exceeds
    // the pool, so shrink it instead of failing.
    size_t cache = std::min<size_t>(cache_size, RTE_MEMPOOL_CACHE_MAX_SIZE);
    cache = std::min(cache, count * 2 / 3);
    if (cache != cache_size) {
        FLINT_DEBUGLOG(env, "mempool %s: cache %zu clamped to %zu", name.c_str(), cache_size,
                       cache);
    }
    // Pool names are global in DPDK and also name its ring and memzones ("RG_MP_<name>"
    // must fit 32 bytes), so prefix a sequence number and truncate.
    std::string rte_name = std::to_string(g_pool_seq.fetch_add(1)) + "_" + name;
    rte_name.resize(std::min<size_t>(rte_name.size(), RTE_MEMPOOL_NAMESIZE - 1));
    rte_mempool *mp = rte_mempool_create(
        rte_name.c_str(), static_cast<unsigned>(count), static_cast<unsigned>(elem_size),
        static_cast<unsigned>(cache), 0, nullptr, nullptr, nullptr, nullptr, SOCKET_ID_ANY, 0);
    if (mp == nullptr) {
        FLINT_ERRLOG("mempool %s (%zu x %zu bytes): %s", name.c_str(), count, elem_size,
                     rte_strerror(rte_errno));
        return nullptr;
    }
    FLINT_DEBUGLOG(env, "mempool %s created as %s: %zu x %zu bytes, cache %zu", name.c_str(),
                   rte_name.c_str(), count, elem_size, cache);
    return std::unique_ptr<Mempool>(new Mempool(mp));
}

Mempool::~Mempool() {
    rte_mempool_free(static_cast<rte_mempool *>(pool_));
}

void *Mempool::get() {
    void *obj = nullptr;
    if (rte_mempool_get(static_cast<rte_mempool *>(pool_), &obj) != 0) {
        return nullptr;
    }
    return obj;
}

void Mempool::put(void *elem) {
    if (elem != nullptr) {
        rte_mempool_put(static_cast<rte_mempool *>(pool_), elem);
    }
}

size_t Mempool::available() const {
    return rte_mempool_avail_count(static_cast<const rte_mempool *>(pool_));
}

size_t Mempool::size() const {
    return static_cast<const rte_mempool *>(pool_)->size;
}

}  // namespace flint::env
