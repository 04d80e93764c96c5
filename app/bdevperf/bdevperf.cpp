// bdevperf: SPDK's block device benchmark, on Flint's bdev layer.
//
//   bdevperf -q DEPTH -o IO_SIZE -w WORKLOAD [-M READ_PCT] -t SECONDS [-j OUT.json]
//            [-c config.json] [-m MASK] [-r SOCK] [-L FLAG] [-s MB] [--no-huge]
//
// The bdevs come from the -c config. Once the app is ready there is one job per bdev per
// core of -m: a Thread pinned to that core that opens the bdev, takes its channel, allocates
// its buffers once and keeps DEPTH I/Os in flight; each completion submits the next I/O
// (modules complete from pollers, so this never recurses inside a submit). The app thread
// prints progress every second, stops the jobs after SECONDS (each drains its I/O, puts its
// channel, closes its descriptor and exits its thread) and prints SPDK's result table.
//
// The data path (submit, complete) does not allocate, lock or log; latency is measured in
// ticks. A failed I/O or a verify mismatch stops that job and makes the exit status 1.

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <json/json.h>

#include "bdev_aio.h"
#include "bdev_malloc.h"
#include "bdev_null.h"
#include "flint/bdev/bdev.h"
#include "flint/bdev/module.h"
#include "flint/env/env.h"
#include "flint/event/app.h"
#include "flint/event/subsystem.h"
#include "flint/thread/thread.h"
#include "flint/util/cpuset.h"
#include "flint/util/log.h"
#include "flint/util/time.h"

namespace {

using namespace flint;
using bdev::IoType;

// ---------------------------------------------------------------------------------------
// Options

enum class Workload {
    Read,
    Write,
    RandRead,
    RandWrite,
    Rw,
    RandRw,
    Verify,
    Unmap,
    Flush,
    WriteZeroes
};

struct WorkloadDesc {
    const char *name;
    Workload type;
    bool random;  // random offsets (else sequential)
    bool mixed;   // reads and writes by -M
    bool writes;  // needs a writable descriptor (unless -M 100)
};

constexpr WorkloadDesc kWorkloads[] = {
    {"read", Workload::Read, false, false, false},
    {"write", Workload::Write, false, false, true},
    {"randread", Workload::RandRead, true, false, false},
    {"randwrite", Workload::RandWrite, true, false, true},
    {"rw", Workload::Rw, false, true, true},
    {"randrw", Workload::RandRw, true, true, true},
    {"verify", Workload::Verify, false, false, true},
    {"unmap", Workload::Unmap, false, false, true},
    {"flush", Workload::Flush, false, false, false},
    {"write_zeroes", Workload::WriteZeroes, false, false, true},
};

struct PerfConfig {
    uint32_t queue_depth = 0;
    uint64_t io_size = 0;
    const WorkloadDesc *workload = nullptr;
    int rwmix_read = -1;  // -M; -1 when not given
    uint32_t time_s = 0;
    std::string json_output;
};
PerfConfig g_cfg;

constexpr uint32_t kMaxQueueDepth = 65536;

// ---------------------------------------------------------------------------------------
// Jobs (everything below runs on the job's thread unless it says otherwise)

struct Job;

struct Task {
    Job *job = nullptr;
    uint8_t *buf = nullptr;   // data written (and, outside verify, read)
    uint8_t *rbuf = nullptr;  // verify: where the data is read back
    uint64_t offset_ios = 0;  // verify: the slot this task holds
    uint64_t offset_blocks = 0;
    uint64_t start_tsc = 0;
    IoType io = IoType::Read;  // the I/O in flight
};

struct alignas(64) Job {
    // ---- set on the app thread before the job starts ----
    std::string bdev_name;
    uint32_t core = 0;
    thread::Thread *thread = nullptr;
    uint32_t block_size = 0;
    uint64_t blocks_per_io = 0;
    uint64_t ios_base = 0;     // first I/O slot of this job's range
    uint64_t size_in_ios = 0;  // number of I/O slots in the range
    uint32_t depth = 0;
    bool verify = false;
    bool random = false;

    // ---- job thread ----
    bdev::Desc *desc = nullptr;
    thread::IoChannel *ch = nullptr;
    uint8_t *bufs = nullptr;
    std::vector<Task> tasks;
    std::vector<Task *> retry;   // refused with -ENOMEM; capacity depth, never grows
    std::vector<uint64_t> busy;  // verify: bitmap of slots in flight
    uint64_t next_seq = 0;
    uint64_t rng = 0;
    uint64_t generation = 0;
    uint32_t inflight = 0;
    bool stopping = false;
    bool counting = false;
    bool finish_scheduled = false;
    bool removed = false;
    uint64_t lat_total = 0;
    uint64_t lat_min = UINT64_MAX;
    uint64_t lat_max = 0;
    uint64_t start_tsc = 0;
    uint64_t stop_tsc = 0;

    // ---- results: written by the job thread, read by the app after the job finished ----
    bool setup_ok = false;
    bool failed = false;
    std::string error;
    // Single writer (the job thread); the app thread reads them for the progress line.
    std::atomic<uint64_t> io_completed{0};
    std::atomic<uint64_t> io_failed{0};

    // ---- app thread ----
    bool finished = false;
};

inline void bump(std::atomic<uint64_t> &c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

inline uint64_t xorshift64s(uint64_t &s) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
}

// The verify pattern: every 64-bit word depends on the LBA and the write's generation.
void fill_pattern(uint8_t *buf, uint64_t len, uint64_t offset_blocks, uint64_t gen) {
    uint64_t v = ((offset_blocks + 1) * 0x9E3779B97F4A7C15ULL) ^ (gen * 0xC2B2AE3D27D4EB4FULL);
    auto *w = reinterpret_cast<uint64_t *>(buf);
    for (uint64_t i = 0; i < len / 8; ++i) {
        w[i] = v + i;
    }
}

std::string strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strfmt(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return buf;
}

void app_on_job_started(Job *j);
void app_on_job_finished(Job *j);
void io_done(bdev::BdevIo *io, bool success, void *arg);

void job_exit_msg(void *) {
    thread::current()->exit();
}

// Releases everything the job holds (on its thread) and reports to the app thread. The
// thread exits when the app answers, so the app never sends to a thread that is gone.
void job_finish_msg(void *arg) {
    auto *j = static_cast<Job *>(arg);
    if (j->ch != nullptr) {
        thread::put_io_channel(j->ch);
        j->ch = nullptr;
    }
    if (j->desc != nullptr) {
        bdev::close(j->desc);
        j->desc = nullptr;
    }
    if (j->bufs != nullptr) {
        env::dma_free(j->bufs);
        j->bufs = nullptr;
    }
    if (j->stop_tsc == 0) {
        j->stop_tsc = util::ticks();
    }
    thread::send_fn(event::app_thread(), [j] { app_on_job_finished(j); });
}

void schedule_finish(Job *j) {
    if (j->finish_scheduled) {
        return;
    }
    j->finish_scheduled = true;
    // On a later turn: never from inside a completion callback of the channel being put.
    thread::send_msg(thread::current(), job_finish_msg, j);
}

void job_stop(Job *j) {
    if (j->stopping) {
        return;
    }
    j->stopping = true;
    j->counting = false;
    j->stop_tsc = util::ticks();
    j->retry.clear();
    if (j->inflight == 0) {
        schedule_finish(j);
    }
}

void job_stop_msg(void *arg) {
    job_stop(static_cast<Job *>(arg));
}

// Error path: once per job, so it may allocate and log.
void job_fail(Job *j, std::string msg) {
    if (!j->failed) {
        j->failed = true;
        j->error = std::move(msg);
        FLINT_ERRLOG("job %s (core %u): %s", j->bdev_name.c_str(), j->core, j->error.c_str());
    }
    job_stop(j);
}

const char *io_name(IoType t) {
    return bdev::io_type_name(t);
}

inline void slot_set(Job *j, uint64_t slot, bool on) {
    uint64_t bit = 1ULL << (slot & 63);
    if (on) {
        j->busy[slot >> 6] |= bit;
    } else {
        j->busy[slot >> 6] &= ~bit;
    }
}
inline bool slot_busy(const Job *j, uint64_t slot) {
    return (j->busy[slot >> 6] >> (slot & 63)) & 1;
}

// The next I/O slot (relative to ios_base).
uint64_t next_slot(Job *j) {
    if (j->random) {
        return xorshift64s(j->rng) % j->size_in_ios;
    }
    uint64_t slot = j->next_seq;
    if (++j->next_seq == j->size_in_ios) {
        j->next_seq = 0;
    }
    if (j->verify) {
        // A slot still being written or read back by a slower task is skipped; depth is
        // at most size_in_ios, so a free one exists.
        while (slot_busy(j, slot)) {
            slot = j->next_seq;
            if (++j->next_seq == j->size_in_ios) {
                j->next_seq = 0;
            }
        }
    }
    return slot;
}

int issue(Job *j, Task *t) {
    switch (t->io) {
        case IoType::Read:
            return bdev::read(j->desc, j->ch, j->verify ? t->rbuf : t->buf, t->offset_blocks,
                              j->blocks_per_io, io_done, t);
        case IoType::Write:
            return bdev::write(j->desc, j->ch, t->buf, t->offset_blocks, j->blocks_per_io, io_done,
                               t);
        case IoType::Unmap:
            return bdev::unmap(j->desc, j->ch, t->offset_blocks, j->blocks_per_io, io_done, t);
        case IoType::WriteZeroes:
            return bdev::write_zeroes(j->desc, j->ch, t->offset_blocks, j->blocks_per_io, io_done,
                                      t);
        case IoType::Flush:
            return bdev::flush(j->desc, j->ch, t->offset_blocks, j->blocks_per_io, io_done, t);
        default:
            return -ENOTSUP;
    }
}

void release_slot(Job *j, Task *t) {
    if (j->verify) {
        slot_set(j, t->offset_ios, false);
    }
}

void submit(Job *j, Task *t) {
    ++j->inflight;
    int rc = issue(j, t);
    if (rc == 0) {
        return;
    }
    --j->inflight;
    if (rc == -ENOMEM && j->inflight > 0) {
        // No free bdev_io on the channel: retried after the next completion.
        j->retry.push_back(t);
        return;
    }
    release_slot(j, t);
    if (rc == -ENODEV) {
        j->removed = true;
        job_stop(j);
        return;
    }
    if (rc == -ENOTSUP) {
        job_fail(j, strfmt("bdev does not support %s", io_name(t->io)));
    } else if (rc == -ENOMEM) {
        job_fail(j, "no bdev_io available (raise bdev_io_cache_size with bdev_set_options)");
    } else {
        job_fail(j, strfmt("%s of %" PRIu64 " blocks at LBA %" PRIu64 " refused: %s",
                           io_name(t->io), j->blocks_per_io, t->offset_blocks, std::strerror(-rc)));
    }
}

void start_task(Job *j, Task *t) {
    uint64_t slot = next_slot(j);
    t->offset_ios = slot;
    t->offset_blocks = (j->ios_base + slot) * j->blocks_per_io;
    switch (g_cfg.workload->type) {
        case Workload::Read:
        case Workload::RandRead:
            t->io = IoType::Read;
            break;
        case Workload::Write:
        case Workload::RandWrite:
            t->io = IoType::Write;
            break;
        case Workload::Rw:
        case Workload::RandRw: {
            int pct = g_cfg.rwmix_read;
            bool rd = pct == 100 || (pct != 0 && static_cast<int>(xorshift64s(j->rng) % 100) < pct);
            t->io = rd ? IoType::Read : IoType::Write;
            break;
        }
        case Workload::Verify:
            slot_set(j, slot, true);
            fill_pattern(t->buf, g_cfg.io_size, t->offset_blocks, ++j->generation);
            t->io = IoType::Write;
            break;
        case Workload::Unmap:
            t->io = IoType::Unmap;
            break;
        case Workload::Flush:
            t->io = IoType::Flush;
            break;
        case Workload::WriteZeroes:
            t->io = IoType::WriteZeroes;
            break;
    }
    t->start_tsc = util::ticks();
    submit(j, t);
}

// Verify mismatch (error path): names the first differing 64-bit word.
std::string mismatch_message(Job *j, Task *t) {
    uint64_t words = g_cfg.io_size / 8;
    auto *exp = reinterpret_cast<const uint64_t *>(t->buf);
    auto *got = reinterpret_cast<const uint64_t *>(t->rbuf);
    uint64_t i = 0;
    while (i < words && exp[i] == got[i]) {
        ++i;
    }
    uint64_t byte = i * 8;
    return strfmt("verify mismatch at LBA %" PRIu64 " (+%" PRIu64 " bytes, block %" PRIu64
                  "): expected 0x%016" PRIx64 ", read 0x%016" PRIx64,
                  t->offset_blocks, byte, t->offset_blocks + byte / j->block_size,
                  i < words ? exp[i] : 0, i < words ? got[i] : 0);
}

void io_done(bdev::BdevIo *io, bool success, void *arg) {
    auto *t = static_cast<Task *>(arg);
    Job *j = t->job;
    bdev::NvmeStatus st = bdev::io_status(io);
    bdev::free_io(io);
    --j->inflight;

    if (!success) {
        release_slot(j, t);
        if (!j->stopping) {
            bump(j->io_failed);
            job_fail(
                j, strfmt("%s of %" PRIu64 " blocks at LBA %" PRIu64 " failed (sct 0x%x, sc 0x%x)",
                          io_name(t->io), j->blocks_per_io, t->offset_blocks, st.sct, st.sc));
        }
    } else if (j->verify && t->io == IoType::Write) {
        if (!j->stopping) {
            t->io = IoType::Read;  // read it back into rbuf
            submit(j, t);
            return;
        }
        release_slot(j, t);
    } else {
        release_slot(j, t);
        if (j->verify && std::memcmp(t->buf, t->rbuf, g_cfg.io_size) != 0) {
            bump(j->io_failed);
            job_fail(j, mismatch_message(j, t));
        } else if (j->counting) {
            uint64_t lat = util::ticks() - t->start_tsc;
            j->lat_total += lat;
            j->lat_min = std::min(j->lat_min, lat);
            j->lat_max = std::max(j->lat_max, lat);
            bump(j->io_completed);
        }
    }

    if (j->stopping) {
        if (j->inflight == 0) {
            schedule_finish(j);
        }
        return;
    }
    start_task(j, t);
    // One bdev_io was freed: give a refused task its turn.
    if (!j->retry.empty() && !j->stopping) {
        Task *r = j->retry.back();
        j->retry.pop_back();
        submit(j, r);
    }
}

void on_bdev_event(Job *j, bdev::EventType type) {
    if (type == bdev::EventType::Remove) {
        j->removed = true;
        job_stop(j);
    }
}

// Setup failure: release what was taken and report.
void job_setup_failed(Job *j, std::string msg) {
    j->failed = true;
    j->error = std::move(msg);
    FLINT_ERRLOG("job %s (core %u): %s", j->bdev_name.c_str(), j->core, j->error.c_str());
    j->stopping = true;
    thread::send_fn(event::app_thread(), [j] { app_on_job_started(j); });
    schedule_finish(j);
}

void job_start(Job *j) {
    bool write = g_cfg.workload->writes && !(g_cfg.workload->mixed && g_cfg.rwmix_read == 100);
    int rc = bdev::open(
        j->bdev_name, write, [j](bdev::EventType type, bdev::Bdev *) { on_bdev_event(j, type); },
        &j->desc);
    if (rc != 0) {
        j->desc = nullptr;
        job_setup_failed(j, strfmt("cannot open bdev '%s' for %s: %s", j->bdev_name.c_str(),
                                   write ? "writing" : "reading", std::strerror(-rc)));
        return;
    }
    j->ch = bdev::get_io_channel(j->desc);
    if (j->ch == nullptr) {
        job_setup_failed(j,
                         strfmt("cannot get an I/O channel for bdev '%s'", j->bdev_name.c_str()));
        return;
    }
    size_t per_task = g_cfg.io_size * (j->verify ? 2 : 1);
    j->bufs = static_cast<uint8_t *>(env::dma_zmalloc(per_task * j->depth, 4096));
    if (j->bufs == nullptr) {
        job_setup_failed(
            j, strfmt("cannot allocate %zu bytes of DMA memory for buffers", per_task * j->depth));
        return;
    }
    j->tasks.resize(j->depth);
    j->retry.reserve(j->depth);
    if (j->verify) {
        j->busy.assign((j->size_in_ios + 63) / 64, 0);
    }
    for (uint32_t i = 0; i < j->depth; ++i) {
        Task &t = j->tasks[i];
        t.job = j;
        t.buf = j->bufs + i * per_task;
        t.rbuf = j->verify ? t.buf + g_cfg.io_size : nullptr;
        if (!j->verify) {
            // Something recognisable for the write workloads.
            fill_pattern(t.buf, g_cfg.io_size, i, j->core + 1);
        }
    }
    j->rng = 0x853C49E6748FEA9BULL ^ (static_cast<uint64_t>(j->core + 1) * 0x9E3779B97F4A7C15ULL) ^
             util::ticks();
    if (j->rng == 0) {
        j->rng = 1;
    }
    j->setup_ok = true;
    thread::send_fn(event::app_thread(), [j] { app_on_job_started(j); });

    j->counting = true;
    j->start_tsc = util::ticks();
    for (uint32_t i = 0; i < j->depth && !j->stopping; ++i) {
        start_task(j, &j->tasks[i]);
    }
}

// ---------------------------------------------------------------------------------------
// The run (app thread)

enum class Phase { Idle, Starting, Running, Stopping, Done };

struct Perf {
    Phase phase = Phase::Idle;
    std::vector<std::unique_ptr<Job>> jobs;
    size_t started = 0;
    size_t finished = 0;
    uint64_t run_start = 0;
    uint64_t run_ticks = 0;
    uint64_t next_report = 0;
    thread::Poller *poller = nullptr;
    std::function<void()> fini_done;  // set when the app shuts down under us
};
Perf g_perf;

double to_us(uint64_t ticks) {
    return static_cast<double>(ticks) * 1e6 / static_cast<double>(util::tick_hz());
}

void print_progress(uint64_t now) {
    double secs = static_cast<double>(now - g_perf.run_start) / util::tick_hz();
    uint64_t ios = 0;
    for (auto &j : g_perf.jobs) {
        ios += j->io_completed.load(std::memory_order_relaxed);
    }
    double iops = secs > 0 ? static_cast<double>(ios) / secs : 0;
    std::printf("%10.2f IOPS, %8.2f MiB/s\n", iops,
                iops * static_cast<double>(g_cfg.io_size) / (1024.0 * 1024.0));
    std::fflush(stdout);
}

void stop_all() {
    if (g_perf.phase == Phase::Stopping || g_perf.phase == Phase::Done) {
        return;
    }
    g_perf.phase = Phase::Stopping;
    thread::poller_unregister(&g_perf.poller);
    for (auto &j : g_perf.jobs) {
        if (!j->finished && j->thread != nullptr) {
            thread::send_msg(j->thread, job_stop_msg, j.get());
        }
    }
}

int run_poll(void *) {
    uint64_t now = util::ticks();
    uint64_t elapsed = now - g_perf.run_start;
    if (elapsed < g_perf.next_report && elapsed < g_perf.run_ticks) {
        return thread::kIdle;
    }
    if (elapsed >= g_perf.next_report) {
        print_progress(now);
        g_perf.next_report += util::tick_hz();
    }
    if (elapsed >= g_perf.run_ticks) {
        stop_all();
    }
    return thread::kBusy;
}

struct JobResult {
    double runtime_s = 0, iops = 0, mibps = 0, fail_s = 0, timeout_s = 0;
    double avg_us = 0, min_us = 0, max_us = 0;
    uint64_t ios = 0, failed = 0, lat_total = 0, lat_min = UINT64_MAX, lat_max = 0;
};

JobResult job_result(const Job &j) {
    JobResult r;
    uint64_t ticks = j.stop_tsc > j.start_tsc && j.start_tsc != 0 ? j.stop_tsc - j.start_tsc : 0;
    r.runtime_s = static_cast<double>(ticks) / util::tick_hz();
    r.ios = j.io_completed.load(std::memory_order_relaxed);
    r.failed = j.io_failed.load(std::memory_order_relaxed);
    if (r.runtime_s > 0) {
        r.iops = r.ios / r.runtime_s;
        r.fail_s = r.failed / r.runtime_s;
    }
    r.mibps = r.iops * static_cast<double>(g_cfg.io_size) / (1024.0 * 1024.0);
    r.lat_total = j.lat_total;
    r.lat_min = j.lat_min;
    r.lat_max = j.lat_max;
    if (r.ios > 0) {
        r.avg_us = to_us(j.lat_total) / static_cast<double>(r.ios);
        r.min_us = to_us(j.lat_min);
        r.max_us = to_us(j.lat_max);
    }
    return r;
}

std::string core_mask_of(uint32_t core) {
    util::CpuSet s;
    s.set(core);
    return s.to_hex();
}

void print_results_and_json(int *exit_code) {
    const char *wl = g_cfg.workload->name;
    bool mixed = g_cfg.workload->mixed;
    std::printf("\n%*s\n", 107, "Latency(us)");
    std::printf(" %-*s: %10s %10s %10s %10s %8s %10s %10s %10s\n", 28, "Device Information",
                "runtime(s)", "IOPS", "MiB/s", "Fail/s", "TO/s", "Average", "min", "max");
    Json::Value results(Json::arrayValue);
    JobResult total;
    for (auto &jp : g_perf.jobs) {
        const Job &j = *jp;
        JobResult r = job_result(j);
        std::string mask = core_mask_of(j.core);
        if (mixed) {
            std::printf(
                " Job: %s (Core Mask %s, workload: %s, percentage: %d, depth: %u, IO "
                "size: %" PRIu64 ")\n",
                j.bdev_name.c_str(), mask.c_str(), wl, g_cfg.rwmix_read, j.depth, g_cfg.io_size);
        } else {
            std::printf(" Job: %s (Core Mask %s, workload: %s, depth: %u, IO size: %" PRIu64 ")\n",
                        j.bdev_name.c_str(), mask.c_str(), wl, j.depth, g_cfg.io_size);
        }
        if (j.failed) {
            std::printf(" Job: %s ended in about %.2f seconds with error: %s\n",
                        j.bdev_name.c_str(), r.runtime_s, j.error.c_str());
            *exit_code = 1;
        } else if (j.removed) {
            std::printf(" Job: %s ended in about %.2f seconds: the bdev was removed\n",
                        j.bdev_name.c_str(), r.runtime_s);
        }
        if (j.verify) {
            std::printf("\t Verification LBA range: start 0x%" PRIx64 " length 0x%" PRIx64 "\n",
                        j.ios_base * j.blocks_per_io, j.size_in_ios * j.blocks_per_io);
        }
        std::printf("\t %-20s: %10.2f %10.2f %10.2f %10.2f %8.2f %10.2f %10.2f %10.2f\n",
                    j.bdev_name.c_str(), r.runtime_s, r.iops, r.mibps, r.fail_s, r.timeout_s,
                    r.avg_us, r.min_us, r.max_us);
        if (r.failed > 0) {
            *exit_code = 1;
        }
        total.iops += r.iops;
        total.mibps += r.mibps;
        total.fail_s += r.fail_s;
        total.ios += r.ios;
        total.lat_total += r.lat_total;
        if (r.ios > 0) {
            total.lat_min = std::min(total.lat_min, r.lat_min);
            total.lat_max = std::max(total.lat_max, r.lat_max);
        }

        Json::Value o;
        o["job"] = j.bdev_name;
        o["core_mask"] = mask;
        o["workload"] = wl;
        if (mixed) {
            o["percentage"] = g_cfg.rwmix_read;
        }
        o["status"] = j.failed ? "failed" : "finished";
        if (j.failed) {
            o["error"] = j.error;
        }
        if (j.verify) {
            o["verify_range"]["start"] = Json::UInt64(j.ios_base * j.blocks_per_io);
            o["verify_range"]["length"] = Json::UInt64(j.size_in_ios * j.blocks_per_io);
        }
        o["queue_depth"] = j.depth;
        o["io_size"] = Json::UInt64(g_cfg.io_size);
        o["runtime"] = r.runtime_s;
        o["iops"] = r.iops;
        o["mibps"] = r.mibps;
        o["io_failed"] = Json::UInt64(r.failed);
        o["io_timeout"] = 0;
        o["avg_latency_us"] = r.avg_us;
        o["min_latency_us"] = r.min_us;
        o["max_latency_us"] = r.max_us;
        results.append(o);
    }
    if (total.ios > 0) {
        total.avg_us = to_us(total.lat_total) / static_cast<double>(total.ios);
        total.min_us = to_us(total.lat_min);
        total.max_us = to_us(total.lat_max);
    }
    std::printf(
        " ================================================================================="
        "==================================\n");
    std::printf(" %-28s: %10s %10.2f %10.2f %10.2f %8.2f %10.2f %10.2f %10.2f\n", "Total", "",
                total.iops, total.mibps, total.fail_s, total.timeout_s, total.avg_us, total.min_us,
                total.max_us);
    std::fflush(stdout);

    if (g_cfg.json_output.empty()) {
        return;
    }
    Json::Value root;
    root["results"] = results;
    Json::Value t;
    t["iops"] = total.iops;
    t["mibps"] = total.mibps;
    uint64_t failed = 0;
    for (auto &j : g_perf.jobs) {
        failed += j->io_failed.load(std::memory_order_relaxed);
    }
    t["io_failed"] = Json::UInt64(failed);
    t["io_timeout"] = 0;
    t["avg_latency_us"] = total.avg_us;
    t["min_latency_us"] = total.min_us;
    t["max_latency_us"] = total.max_us;
    root["total"] = t;
    root["core_count"] = env::cores().count();
    Json::StreamWriterBuilder wb;
    wb["indentation"] = "  ";
    std::ofstream out(g_cfg.json_output, std::ios::trunc);
    if (out) {
        out << Json::writeString(wb, root) << "\n";
    }
    if (!out) {
        FLINT_ERRLOG("cannot write the results to '%s': %s", g_cfg.json_output.c_str(),
                     std::strerror(errno));
        *exit_code = 1;
    }
}

void finish_run() {
    g_perf.phase = Phase::Done;
    thread::poller_unregister(&g_perf.poller);
    int exit_code = 0;
    bool any_setup_failed = false;
    for (auto &j : g_perf.jobs) {
        if (!j->setup_ok) {
            any_setup_failed = true;
        }
    }
    if (any_setup_failed) {
        for (auto &j : g_perf.jobs) {
            if (!j->setup_ok) {
                std::fprintf(stderr, "bdevperf: job %s (core %u): %s\n", j->bdev_name.c_str(),
                             j->core, j->error.c_str());
            }
        }
        exit_code = 1;
    } else {
        print_results_and_json(&exit_code);
    }
    if (g_perf.fini_done) {
        auto done = std::move(g_perf.fini_done);
        g_perf.fini_done = nullptr;
        if (exit_code != 0) {
            event::app_stop(exit_code);
        }
        done();
        return;
    }
    event::app_stop(exit_code);
}

void app_on_job_started(Job *j) {
    ++g_perf.started;
    if (g_perf.started < g_perf.jobs.size()) {
        return;
    }
    bool all_ok = true;
    for (auto &job : g_perf.jobs) {
        all_ok = all_ok && job->setup_ok;
    }
    if (!all_ok) {
        stop_all();
        return;
    }
    if (g_perf.phase != Phase::Starting) {
        return;  // stopping already (shutdown)
    }
    g_perf.phase = Phase::Running;
    g_perf.run_start = util::ticks();
    g_perf.run_ticks = g_cfg.time_s * util::tick_hz();
    g_perf.next_report = util::tick_hz();
    std::printf("Running I/O for %u seconds...\n", g_cfg.time_s);
    std::fflush(stdout);
    g_perf.poller = thread::poller_register(run_poll, nullptr, 10000, "bdevperf_run");
}

void app_on_job_finished(Job *j) {
    j->finished = true;
    // The job thread waits for this answer before it exits.
    thread::send_msg(j->thread, job_exit_msg, nullptr);
    j->thread = nullptr;
    ++g_perf.finished;
    // A job that ends on its own (failure, bdev removed) does not stop the others.
    if (g_perf.finished == g_perf.jobs.size()) {
        finish_run();
    }
}

void on_ready() {
    std::vector<bdev::Bdev *> list;
    for (bdev::Bdev *b : bdev::bdevs()) {
        if (bdev::get_bdev(b->name) == b) {
            list.push_back(b);
        }
    }
    if (list.empty()) {
        std::fprintf(stderr, "bdevperf: no bdevs found (create them with the -c config)\n");
        event::app_stop(1);
        return;
    }
    std::vector<uint32_t> cores = env::cores().cores();
    bool verify = g_cfg.workload->type == Workload::Verify;
    for (bdev::Bdev *b : list) {
        if (g_cfg.io_size % b->block_size != 0) {
            std::fprintf(stderr,
                         "bdevperf: IO size (%" PRIu64
                         ") is not a multiple of the block size "
                         "of bdev %s (%u)\n",
                         g_cfg.io_size, b->name.c_str(), b->block_size);
            event::app_stop(1);
            return;
        }
        uint64_t blocks_per_io = g_cfg.io_size / b->block_size;
        uint64_t total_ios = b->num_blocks / blocks_per_io;
        // Verify jobs of one bdev each take their own slice, so they never overlap.
        uint64_t slice = verify ? total_ios / cores.size() : total_ios;
        if (slice == 0) {
            std::fprintf(stderr,
                         "bdevperf: bdev %s (%" PRIu64
                         " blocks of %u bytes) is too small for "
                         "IO size %" PRIu64 "%s\n",
                         b->name.c_str(), b->num_blocks, b->block_size, g_cfg.io_size,
                         verify && cores.size() > 1 ? " split over the cores" : "");
            event::app_stop(1);
            return;
        }
        for (size_t i = 0; i < cores.size(); ++i) {
            auto j = std::make_unique<Job>();
            j->bdev_name = b->name;
            j->core = cores[i];
            j->block_size = b->block_size;
            j->blocks_per_io = blocks_per_io;
            j->verify = verify;
            j->random = g_cfg.workload->random;
            j->ios_base = verify ? i * slice : 0;
            j->size_in_ios = slice;
            j->depth = g_cfg.queue_depth;
            if (verify && j->depth > slice) {
                j->depth = static_cast<uint32_t>(slice);
            }
            g_perf.jobs.push_back(std::move(j));
        }
    }
    g_perf.phase = Phase::Starting;
    for (auto &jp : g_perf.jobs) {
        Job *j = jp.get();
        util::CpuSet mask;
        mask.set(j->core);
        std::string name = "bdevperf_" + j->bdev_name + "_" + std::to_string(j->core);
        j->thread = thread::create(name, &mask);
        if (j->thread == nullptr || thread::send_fn(j->thread, [j] { job_start(j); }) != 0) {
            // Counts as started and finished at once.
            j->failed = true;
            j->error = "cannot create the job thread";
            j->thread = nullptr;
            j->finished = true;
            ++g_perf.finished;
            app_on_job_started(j);
        }
    }
    if (g_perf.finished == g_perf.jobs.size()) {
        finish_run();
    }
}

// A subsystem after "bdev": at shutdown (SIGINT, SIGTERM) it stops the jobs, so they close
// their descriptors before the bdevs go away, and prints what was measured.
void register_perf_subsystem() {
    event::subsystems().add({
        .name = "bdevperf",
        .depends_on = {"bdev"},
        .init = [](std::function<void(int)> done) { done(0); },
        .fini =
            [](std::function<void()> done) {
                if (g_perf.phase == Phase::Idle || g_perf.phase == Phase::Done) {
                    done();
                    return;
                }
                g_perf.fini_done = std::move(done);
                stop_all();
            },
        .write_config = nullptr,
    });
}

// ---------------------------------------------------------------------------------------
// Command line

void usage(const char *prog) {
    std::printf(
        "%s -q <depth> -o <size> -w <workload> -t <seconds> [options]\n"
        "bdevperf options:\n"
        " -q <depth>                 I/Os in flight per job\n"
        " -o <size>                  I/O size in bytes (k, m, g suffixes allowed)\n"
        " -w <workload>              read, write, randread, randwrite, rw, randrw, verify,\n"
        "                            unmap, flush, write_zeroes\n"
        " -M <percent>               read percentage of rw and randrw (0-100)\n"
        " -t <seconds>               run time\n"
        " -j <file>                  also write the results to this file as JSON\n"
        "\n",
        prog);
    event::print_usage(prog);
}

bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
    if (s == nullptr || *s == '\0' || *s == '-' || *s == '+') {
        return false;
    }
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

// Bytes, with an optional binary suffix: 4096, 4k, 4KiB, 1m, 1g.
bool parse_size(const char *s, uint64_t *out) {
    if (s == nullptr || *s < '0' || *s > '9') {
        return false;
    }
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (errno != 0) {
        return false;
    }
    std::string suffix(end);
    for (auto &c : suffix) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    uint64_t mult;
    if (suffix.empty() || suffix == "b") {
        mult = 1;
    } else if (suffix == "k" || suffix == "kb" || suffix == "kib") {
        mult = 1ULL << 10;
    } else if (suffix == "m" || suffix == "mb" || suffix == "mib") {
        mult = 1ULL << 20;
    } else if (suffix == "g" || suffix == "gb" || suffix == "gib") {
        mult = 1ULL << 30;
    } else {
        return false;
    }
    if (v > UINT64_MAX / mult) {
        return false;
    }
    *out = v * mult;
    return true;
}

enum class Parsed { Ok, Help, Error };

// bdevperf's own options (-q -o -w -M -t -j) ride on the framework's parser.
Parsed parse_command_line(int argc, char **argv, event::AppOptions *opts) {
    uint64_t v = 0;
    std::string workload;
    bool have_q = false, have_o = false, have_w = false, have_t = false;
    auto bad = [&](const std::string &msg) {
        std::fprintf(stderr, "%s: %s\n", argv[0], msg.c_str());
        return Parsed::Error;
    };
    event::AppArgs own;
    own.short_opts = "q:o:w:M:t:j:";
    own.parse = [&](int ch, const char *arg, std::string *err) {
        switch (ch) {
            case 'q':
                if (!parse_uint(arg, 1, kMaxQueueDepth, &v)) {
                    *err = "invalid -q '" + std::string(arg) + "': expected 1.." +
                           std::to_string(kMaxQueueDepth);
                    return false;
                }
                g_cfg.queue_depth = static_cast<uint32_t>(v);
                have_q = true;
                return true;
            case 'o':
                if (!parse_size(arg, &v) || v == 0 || v > (1ULL << 30)) {
                    *err = "invalid -o '" + std::string(arg) +
                           "': expected an I/O size in bytes (e.g. 4096 or 4k), at most 1g";
                    return false;
                }
                g_cfg.io_size = v;
                have_o = true;
                return true;
            case 'w':
                workload = arg;
                have_w = true;
                return true;
            case 'M':
                if (!parse_uint(arg, 0, 100, &v)) {
                    *err = "invalid -M '" + std::string(arg) + "': expected 0..100";
                    return false;
                }
                g_cfg.rwmix_read = static_cast<int>(v);
                return true;
            case 't':
                if (!parse_uint(arg, 1, 365ULL * 24 * 3600, &v)) {
                    *err =
                        "invalid -t '" + std::string(arg) + "': expected a number of seconds > 0";
                    return false;
                }
                g_cfg.time_s = static_cast<uint32_t>(v);
                have_t = true;
                return true;
            default:  // 'j'
                g_cfg.json_output = arg;
                return true;
        }
    };
    std::string error;
    switch (event::parse_args(argc, argv, opts, &error, own)) {
        case event::ParseResult::Help:
            return Parsed::Help;
        case event::ParseResult::Error:
            return bad(error);
        case event::ParseResult::Ok:
            break;
    }
    if (!have_q) {
        return bad("missing -q (queue depth)");
    }
    if (!have_o) {
        return bad("missing -o (I/O size)");
    }
    if (!have_w) {
        return bad("missing -w (workload)");
    }
    if (!have_t) {
        return bad("missing -t (run time in seconds)");
    }
    for (const auto &w : kWorkloads) {
        if (workload == w.name) {
            g_cfg.workload = &w;
        }
    }
    if (g_cfg.workload == nullptr) {
        return bad("invalid -w '" + workload +
                   "': expected read, write, randread, randwrite, rw, randrw, verify, unmap, "
                   "flush or write_zeroes");
    }
    if (g_cfg.workload->mixed && g_cfg.rwmix_read < 0) {
        return bad("-M (read percentage, 0..100) is required for -w " + workload);
    }
    if (!g_cfg.workload->mixed && g_cfg.rwmix_read >= 0) {
        std::fprintf(stderr, "%s: -M is ignored for -w %s (only rw and randrw use it)\n", argv[0],
                     workload.c_str());
    }
    if (g_cfg.io_size % 512 != 0) {
        return bad("invalid -o " + std::to_string(g_cfg.io_size) +
                   ": must be a multiple of 512 bytes");
    }

    return Parsed::Ok;
}

}  // namespace

int main(int argc, char **argv) {
    flint::event::AppOptions opts;
    opts.name = "bdevperf";
    switch (parse_command_line(argc, argv, &opts)) {
        case Parsed::Help:
            usage(argv[0]);
            return 0;
        case Parsed::Error:
            std::fprintf(stderr, "run '%s -h' for the options\n", argv[0]);
            return 1;
        case Parsed::Ok:
            break;
    }
    flint::bdev::register_subsystem();
    flint::bdev_malloc::register_module();
    flint::bdev_null::register_module();
    flint::bdev_aio::register_module();
    register_perf_subsystem();
    // tick_hz() measures the TSC (about 20 ms) on its first call: not in the middle of a run.
    flint::util::tick_hz();
    flint::event::app_on_ready(on_ready);
    return flint::event::app_start(opts);
}
