// The aio bdev module. Each thread's channel of a disk owns a kernel AIO context, a worker
// thread and an active poller. Reads, writes and flushes go to the kernel with io_submit; the
// poller reaps their completions from the context's completion ring in user space
// (io_getevents when the ring's layout is not the one we know). Linux AIO has no fallocate
// opcode, so unmap and write zeroes (and flushes when the kernel refuses IOCB_CMD_FDSYNC) go
// to the channel's worker through a lock-free ring, and come back through another that the
// same poller reaps: a hole punch that takes milliseconds never blocks the reactor. Nothing
// completes inside submit, and everything completes on the channel's thread.

#include "bdev_aio.h"

#include <fcntl.h>
#include <libaio.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <system_error>
#include <thread>

#include "flint/bdev/module.h"
#include "flint/bdev/module_util.h"
#include "flint/env/env.h"
#include "flint/thread/thread.h"
#include "flint/util/log.h"
#include "spsc_ring.h"

FLINT_LOG_FLAG(bdev_aio);

namespace flint::bdev_aio {

void register_rpcs();  // bdev_aio_rpc.cpp

namespace {

using bdev::BdevIo;
using bdev::IoType;
using bdev::NvmeStatus;
namespace nvme_status = bdev::nvme_status;

// iocbs one channel keeps in the kernel, and requests in its worker's rings; more wait on
// the channel's lists. A power of two, as the rings need.
constexpr int kQueueDepth = 128;
static_assert((kQueueDepth & (kQueueDepth - 1)) == 0);
// How often a reset re-checks for in-flight I/O.
constexpr uint64_t kResetRetryUs = 100;

std::atomic<bool> g_fail_direct_open{false};
std::atomic<bool> g_use_ring{true};
std::atomic<bool> g_use_fdsync{true};
std::atomic<bool> g_hold_workers{false};

// The kernel's completion ring header (fs/aio.c, struct aio_ring), mapped at the address an
// io_context_t holds. Its layout is ABI: fio and SPDK read it the same way.
struct AioRing {
    uint32_t id;
    uint32_t nr;  // events in the ring
    uint32_t head;
    uint32_t tail;
    uint32_t magic;
    uint32_t compat_features;
    uint32_t incompat_features;
    uint32_t header_length;
};
constexpr uint32_t kAioRingMagic = 0xa10a10a1;

class AioDisk;
struct AioChannel;

// Per-I/O state, kept in BdevIo::driver_ctx.
struct Task {
    iocb cb;         // the kernel's request; cb.data points back at the BdevIo
    BdevIo *next;    // pending or done list link
    AioChannel *ch;  // the submitting channel
    thread::Poller *reset_poller;
    NvmeStatus status;  // for the done list
};
static_assert(sizeof(Task) <= BdevIo::kDriverCtxSize, "Task must fit in driver_ctx");
static_assert(alignof(Task) <= alignof(std::max_align_t) && alignof(Task) <= 16);

Task *task(BdevIo *io) {
    return std::launder(reinterpret_cast<Task *>(io->driver_ctx));
}

// FIFO threaded through Task::next: no allocation on the data path.
struct IoList {
    BdevIo *head = nullptr;
    BdevIo *tail = nullptr;
    uint32_t count = 0;

    void push_back(BdevIo *io) {
        task(io)->next = nullptr;
        if (tail != nullptr) {
            task(tail)->next = io;
        } else {
            head = io;
        }
        tail = io;
        ++count;
    }
    void push_front(BdevIo *io) {
        task(io)->next = head;
        head = io;
        if (tail == nullptr) {
            tail = io;
        }
        ++count;
    }
    BdevIo *pop_front() {
        BdevIo *io = head;
        if (io != nullptr) {
            head = task(io)->next;
            if (head == nullptr) {
                tail = nullptr;
            }
            --count;
        }
        return io;
    }
    bool empty() const { return head == nullptr; }
};

// A file descriptor closed with its owner.
class UniqueFd {
public:
    UniqueFd() = default;
    ~UniqueFd() { reset(); }
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;

    int get() const { return fd_; }
    void reset(int fd = -1) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// A request to a worker and, on the way back, its result. The worker never dereferences io:
// the BdevIo belongs to the channel's thread, and after a misuse (a channel put with I/O in
// flight) it may already be freed while the worker still runs.
struct Work {
    BdevIo *io;
    uint64_t offset;  // bytes
    uint64_t length;  // bytes
    IoType type;      // Unmap, WriteZeroes or Flush
    int err;          // set by the worker: 0 or an errno
};

// A thread for the calls Linux AIO has no opcode for: fallocate, and fdatasync when the kernel
// refuses IOCB_CMD_FDSYNC. They block for milliseconds, so they must not run on a reactor.
//
// One per channel, not one per disk: the channel's thread is then the only producer of requests
// and the only consumer of results, so both rings are single-producer/single-consumer with no
// lock, and each result comes back to the one thread that may call io_complete for it. A worker
// per disk would need a multi-producer ring and a way to route results back to each thread.
// The cost is one mostly sleeping OS thread per (disk, thread with a channel).
class Worker {
public:
    Worker() = default;
    ~Worker() { stop(); }
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    // Control path, on the channel's thread: rings of depth slots, the eventfd, the thread.
    // 0 or a negative errno.
    int start(AioDisk *disk, uint32_t depth);
    // Lets the thread finish every request already posted, then joins it. Idempotent.
    void stop();

    // ---- The channel's thread only; no allocation, lock or blocking ----
    // False when the request ring is full.
    bool post(const Work &w) { return requests_.push(w, std::memory_order_seq_cst); }
    // After posting: wakes the thread if it said it is going to sleep. The seq_cst push above
    // and this seq_cst load pair with the thread's seq_cst store of sleeping_ and its seq_cst
    // emptiness check in run(): at least one side sees the other's store, so a request never
    // waits beside a sleeping worker.
    void wake() {
        if (sleeping_.load(std::memory_order_seq_cst) &&
            sleeping_.exchange(false, std::memory_order_seq_cst)) {
            notify();
        }
    }
    bool reap(Work *w) { return results_.pop(w); }

private:
    void run(cpu_set_t cpus);
    int execute(const Work &w);
    void notify() {
        uint64_t one = 1;
        ssize_t rc = ::write(efd_.get(), &one, sizeof(one));
        (void)rc;  // cannot fail: the counter never nears its limit
    }

    SpscRing<Work> requests_;  // channel thread -> worker
    SpscRing<Work> results_;   // worker -> channel thread
    alignas(64) std::atomic<bool> sleeping_{false};
    std::atomic<bool> stop_{false};
    UniqueFd efd_;  // the worker blocks reading it while idle
    AioDisk *disk_ = nullptr;
    std::thread thread_;
};

struct AioChannel {
    AioDisk *disk = nullptr;
    io_context_t ctx = nullptr;
    AioRing *ring = nullptr;  // null: reap with io_getevents
    thread::Poller *poller = nullptr;
    uint32_t in_kernel = 0;  // submitted, not yet reaped
    IoList pending;          // waiting for room in the context
    IoList done;             // finished outside the kernel; the poller completes them
    // Posted to the worker and not yet reaped. At most kQueueDepth, the capacity of each of
    // its rings, so the worker always finds room for a result.
    uint32_t in_worker = 0;
    IoList worker_wait;  // waiting for room in the worker's rings
    Worker worker;

    // I/O this channel has not completed yet (a reset in progress is not counted).
    uint64_t busy() const {
        return uint64_t{in_kernel} + pending.count + done.count + in_worker + worker_wait.count;
    }
};
static_assert(alignof(AioChannel) <= 64, "channel contexts are 64-byte aligned");

class AioDisk final : public bdev::BdevOps {
public:
    ~AioDisk() override;

    void submit(thread::IoChannel *ch, BdevIo *io) override;
    bool supports(IoType type) const override;
    void *io_device() override { return this; }
    void destruct(std::function<void()> done) override;
    void dump_info(Json::Value &driver_specific) const override;
    void write_config(Json::Value &config) const override;

    int channel_create(AioChannel *c);
    void channel_destroy(AioChannel *c);
    // Reads the current size in bytes; 0 or -errno.
    int read_size(uint64_t *bytes) const;
    void reset(AioChannel *c, BdevIo *io);

    bdev::Bdev bdev;
    std::string filename;
    int fd = -1;           // O_DIRECT when direct
    int buffered_fd = -1;  // when direct: the same file without O_DIRECT, for unaligned buffers
    bool direct = false;
    bool is_blockdev = false;
    bool block_size_override = false;
    bool fallocate_enabled = true;          // the create option
    bool unmap_ok = false;                  // punching holes works here
    uint32_t mem_align = 512;               // O_DIRECT buffer address alignment
    uint32_t len_align = 512;               // O_DIRECT segment length alignment
    std::atomic<bool> zero_range_ok{true};  // cleared at the first EOPNOTSUPP
    std::atomic<bool> fdsync_ok{true};      // cleared when the kernel refuses IOCB_CMD_FDSYNC
};

class AioModule final : public bdev::Module {
public:
    const char *name() const override { return "aio"; }
};

AioModule &module() {
    static AioModule m;
    return m;
}

AioDisk *find_disk(const std::string &name) {
    bdev::Bdev *b = bdev::get_bdev(name);
    if (b == nullptr || b->module != &module()) {
        return nullptr;
    }
    return static_cast<AioDisk *>(b->ops);
}

// ---- The worker ----

// The CPUs the process may use (taskset, cgroups), read before main(): by the time a channel
// is created the EAL has pinned the main thread to one core.
const cpu_set_t g_process_cpus = [] {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        CPU_ZERO(&set);
        for (int i = 0; i < CPU_SETSIZE; ++i) {
            CPU_SET(i, &set);
        }
    }
    return set;
}();

// Where workers run: the process's CPUs but the reactors', which busy-poll; all of the
// process's CPUs if the reactors have them all. A worker would otherwise inherit the pinning
// of the reactor that created it and fight its poll loop for one core.
cpu_set_t worker_cpus() {
    cpu_set_t set = g_process_cpus;
    if (env::initialized()) {
        for (uint32_t core : env::cores().cores()) {
            if (core < CPU_SETSIZE) {
                CPU_CLR(core, &set);
            }
        }
    }
    return CPU_COUNT(&set) > 0 ? set : g_process_cpus;
}

int Worker::start(AioDisk *disk, uint32_t depth) {
    disk_ = disk;
    if (!requests_.init(depth) || !results_.init(depth)) {
        return -ENOMEM;
    }
    efd_.reset(eventfd(0, EFD_CLOEXEC));
    if (efd_.get() < 0) {
        return -errno;
    }
    // The thread starts with signals blocked: they are the reactors' business, and here they
    // would only interrupt a call. Faults still arrive.
    sigset_t block;
    sigset_t old;
    sigfillset(&block);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) {
        sigdelset(&block, sig);
    }
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = 0;
    try {
        thread_ = std::thread([this, cpus = worker_cpus()] { run(cpus); });
    } catch (const std::system_error &e) {
        rc = e.code().value() > 0 ? -e.code().value() : -EAGAIN;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return rc;
}

void Worker::stop() {
    if (!thread_.joinable()) {
        return;
    }
    stop_.store(true, std::memory_order_seq_cst);
    notify();
    thread_.join();
}

void Worker::run(cpu_set_t cpus) {
    pthread_setname_np(pthread_self(), "flint_aio_wrk");
    if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0) {
        sched_setaffinity(0, sizeof(g_process_cpus), &g_process_cpus);  // cpuset changed since
    }
    Work w;
    for (;;) {
        if (requests_.pop(&w)) {
            while (g_hold_workers.load(std::memory_order_acquire) &&
                   !stop_.load(std::memory_order_acquire)) {
                std::this_thread::sleep_for(std::chrono::microseconds(100));  // tests only
            }
            w.err = execute(w);
            // Never full: the channel has at most capacity requests here, results included. The
            // loop only guards that invariant.
            while (!results_.push(w)) {
                std::this_thread::yield();
            }
            continue;
        }
        // Going to sleep: say so, then look once more (see wake()).
        sleeping_.store(true, std::memory_order_seq_cst);
        if (!requests_.empty(std::memory_order_seq_cst)) {
            sleeping_.store(false, std::memory_order_seq_cst);
            continue;
        }
        // Stop only once the ring is drained: teardown waits for posted work.
        if (stop_.load(std::memory_order_seq_cst)) {
            return;
        }
        uint64_t n;
        ssize_t rc = ::read(efd_.get(), &n, sizeof(n));
        (void)rc;  // a wake-up, a stale one or EINTR: the loop looks again either way
    }
}

// The blocking call itself; returns 0 or an errno. The error mapping is the poller's.
int Worker::execute(const Work &w) {
    const int fd = disk_->fd;
    const auto off = static_cast<off_t>(w.offset);
    const auto len = static_cast<off_t>(w.length);
    switch (w.type) {
        case IoType::Unmap:
            return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0 ? 0
                                                                                            : errno;
        case IoType::WriteZeroes: {
            // ZERO_RANGE keeps the blocks allocated; a punched hole reads as zeroes too.
            int rc = -1;
            int err = EOPNOTSUPP;
            if (disk_->zero_range_ok.load(std::memory_order_relaxed)) {
                rc = fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
                err = errno;
                if (rc != 0 && err == EOPNOTSUPP) {
                    disk_->zero_range_ok.store(false, std::memory_order_relaxed);
                }
            }
            if (rc != 0 && !disk_->zero_range_ok.load(std::memory_order_relaxed)) {
                rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
                err = errno;
            }
            return rc == 0 ? 0 : err;
        }
        case IoType::Flush:
            return fdatasync(fd) == 0 ? 0 : errno;
        default:
            return EINVAL;
    }
}

// ---- The data path ----

// Reaps up to max completions without blocking.
int reap(AioChannel *c, io_event *out, int max) {
    AioRing *r = c->ring;
    if (r == nullptr) {
        timespec zero{};
        return io_getevents(c->ctx, 0, max, out, &zero);
    }
    // The kernel writes events, then publishes tail; we read events, then publish head,
    // which tells the kernel the slots are free again.
    uint32_t head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
    uint32_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    uint32_t nr = r->nr;
    uint32_t avail = tail >= head ? tail - head : nr - head + tail;
    uint32_t n = std::min<uint32_t>(avail, static_cast<uint32_t>(max));
    if (n == 0) {
        return 0;
    }
    const auto *events =
        reinterpret_cast<const io_event *>(reinterpret_cast<const char *>(r) + r->header_length);
    uint32_t first = std::min(n, nr - head);
    std::memcpy(out, events + head, first * sizeof(io_event));
    std::memcpy(out + first, events, (n - first) * sizeof(io_event));
    __atomic_store_n(&r->head, (head + n) % nr, __ATOMIC_RELEASE);
    return static_cast<int>(n);
}

// Hands io to the kernel. 0, or a negative errno from io_submit.
int kernel_submit(AioChannel *c, BdevIo *io) {
    iocb *cb = &task(io)->cb;
    int rc = io_submit(c->ctx, 1, &cb);
    if (rc == 1) {
        ++c->in_kernel;
        return 0;
    }
    return rc < 0 ? rc : -EAGAIN;
}

void finish_later(AioChannel *c, BdevIo *io, NvmeStatus status) {
    task(io)->status = status;
    c->done.push_back(io);
}

// Posts io to the worker if its rings have room; false otherwise.
bool post(AioChannel *c, BdevIo *io) {
    if (c->in_worker >= kQueueDepth) {
        return false;
    }
    const uint64_t bs = io->bdev->block_size;
    if (!c->worker.post(Work{io, io->offset_blocks * bs, io->num_blocks * bs, io->type, 0})) {
        return false;
    }
    ++c->in_worker;
    return true;
}

// Unmap, write zeroes, and flushes without the kernel's aio fsync: to the worker, behind any
// I/O already waiting for it.
void to_worker(AioChannel *c, BdevIo *io) {
    if (c->worker_wait.empty() && post(c, io)) {
        c->worker.wake();
    } else {
        c->worker_wait.push_back(io);
    }
}

// io_submit refused io with rc (not -EAGAIN).
void submit_failed(AioChannel *c, BdevIo *io, int rc) {
    if (io->type == IoType::Flush && rc == -EINVAL) {
        // No aio fsync here (kernels before 4.18, some file systems): fdatasync on the worker.
        c->disk->fdsync_ok.store(false, std::memory_order_relaxed);
        to_worker(c, io);
    } else {
        finish_later(c, io, nvme_status::kDataTransferError);
    }
}

void start(AioChannel *c, BdevIo *io) {
    // Keep FIFO order behind I/O already waiting for room.
    if (!c->pending.empty() || c->in_kernel >= kQueueDepth) {
        c->pending.push_back(io);
        return;
    }
    int rc = kernel_submit(c, io);
    if (rc == -EAGAIN) {
        c->pending.push_back(io);
    } else if (rc != 0) {
        submit_failed(c, io, rc);
    }
}

// O_DIRECT needs aligned buffer addresses and segment lengths.
bool iovs_aligned(const AioDisk *d, const BdevIo *io) {
    uintptr_t bits = 0;
    uintptr_t len_bits = 0;
    for (int i = 0; i < io->iovcnt; ++i) {
        bits |= reinterpret_cast<uintptr_t>(io->iovs[i].iov_base);
        len_bits |= io->iovs[i].iov_len;
    }
    return (bits & (d->mem_align - 1)) == 0 && (len_bits & (d->len_align - 1)) == 0;
}

// Completes what the worker finished, then posts what waits for room.
int worker_poll(AioChannel *c) {
    int work = thread::kIdle;
    Work w;
    // Bounded: a completion may post again, and the worker may finish that while we loop.
    for (int i = 0; i < kQueueDepth && c->worker.reap(&w); ++i) {
        work = thread::kBusy;
        --c->in_worker;
        bdev::io_complete(w.io,
                          w.err == 0 ? nvme_status::kSuccess : nvme_status::kDataTransferError);
    }
    bool posted = false;
    // Pops only when there is room, so a full worker leaves the waiting bdev_ios untouched.
    while (!c->worker_wait.empty() && c->in_worker < kQueueDepth) {
        BdevIo *io = c->worker_wait.pop_front();
        if (!post(c, io)) {
            c->worker_wait.push_front(io);
            break;
        }
        posted = true;
    }
    if (posted) {
        work = thread::kBusy;
        c->worker.wake();
    }
    return work;
}

int channel_poll(void *arg) {
    auto *c = static_cast<AioChannel *>(arg);
    int work = thread::kIdle;
    if (c->in_worker > 0 || !c->worker_wait.empty()) {
        work = worker_poll(c);
    }
    if (c->in_kernel > 0) {
        io_event events[kQueueDepth];
        int n = reap(c, events, kQueueDepth);
        if (n > 0) {
            work = thread::kBusy;
            c->in_kernel -= static_cast<uint32_t>(n);
            for (int i = 0; i < n; ++i) {
                auto *io = static_cast<BdevIo *>(events[i].data);
                // res is bytes done or -errno; a short transfer (past EOF) is an error too.
                auto res = static_cast<int64_t>(events[i].res);
                int64_t want = io->type == IoType::Flush ? 0 : static_cast<int64_t>(io_bytes(io));
                bdev::io_complete(
                    io, res == want ? nvme_status::kSuccess : nvme_status::kDataTransferError);
            }
        }
    }
    while (!c->pending.empty() && c->in_kernel < kQueueDepth) {
        BdevIo *io = c->pending.pop_front();
        int rc = kernel_submit(c, io);
        if (rc == -EAGAIN) {
            c->pending.push_front(io);
            break;
        }
        work = thread::kBusy;
        if (rc != 0) {
            submit_failed(c, io, rc);
        }
    }
    if (!c->done.empty()) {
        work = thread::kBusy;
        // Detach first: a completion callback may submit again, and that I/O must wait for
        // the next poll.
        IoList list = c->done;
        c->done = IoList{};
        while (BdevIo *io = list.pop_front()) {
            bdev::io_complete(io, task(io)->status);
        }
    }
    return work;
}

void AioDisk::submit(thread::IoChannel *ch, BdevIo *io) {
    auto *c = static_cast<AioChannel *>(thread::channel_ctx(ch));
    Task *t = new (io->driver_ctx) Task{};
    t->ch = c;
    const auto off = static_cast<off_t>(io->offset_blocks * bdev.block_size);
    switch (io->type) {
        case IoType::Read:
        case IoType::Write: {
            int f = buffered_fd >= 0 && !iovs_aligned(this, io) ? buffered_fd : fd;
            if (io->type == IoType::Read) {
                io_prep_preadv(&t->cb, f, io->iovs, io->iovcnt, off);
            } else {
                io_prep_pwritev(&t->cb, f, io->iovs, io->iovcnt, off);
            }
            t->cb.data = io;
            start(c, io);
            return;
        }
        case IoType::Flush:
            if (!fdsync_ok.load(std::memory_order_relaxed)) {
                to_worker(c, io);
                return;
            }
            io_prep_fdsync(&t->cb, fd);
            t->cb.data = io;
            start(c, io);
            return;
        case IoType::Unmap:
        case IoType::WriteZeroes:
            to_worker(c, io);
            return;
        case IoType::Reset:
            reset(c, io);
            return;
        default:
            finish_later(c, io, nvme_status::kInvalidField);
            return;
    }
}

bool AioDisk::supports(IoType type) const {
    switch (type) {
        case IoType::Read:
        case IoType::Write:
        case IoType::Flush:
        case IoType::Reset:
            return true;
        case IoType::Unmap:
        case IoType::WriteZeroes:
            return unmap_ok;
        default:
            return false;
    }
}

// ---- Reset: completes once no channel of this disk has I/O left ----

int reset_retry(void *arg);

void AioDisk::reset(AioChannel *c, BdevIo *io) {
    thread::for_each_channel(
        this,
        [](thread::ChannelIter &it) {
            auto *ch = static_cast<AioChannel *>(thread::channel_ctx(it.channel()));
            it.next(ch->busy() != 0 ? 1 : 0);
        },
        [c, io](int status) {
            if (status == 0) {
                finish_later(c, io, nvme_status::kSuccess);
                return;
            }
            task(io)->reset_poller =
                thread::poller_register(reset_retry, io, kResetRetryUs, "bdev_aio_reset");
            if (task(io)->reset_poller == nullptr) {
                finish_later(c, io, nvme_status::kInternalError);
            }
        });
}

int reset_retry(void *arg) {
    auto *io = static_cast<BdevIo *>(arg);
    Task *t = task(io);
    thread::poller_unregister(&t->reset_poller);
    t->ch->disk->reset(t->ch, io);
    return thread::kBusy;
}

// ---- Channels ----

int AioDisk::channel_create(AioChannel *c) {
    c->disk = this;
    int rc = io_setup(kQueueDepth, &c->ctx);
    if (rc < 0) {
        FLINT_ERRLOG("aio bdev '%s': io_setup failed: %s (see /proc/sys/fs/aio-max-nr)",
                     bdev.name.c_str(), std::strerror(-rc));
        return rc;
    }
    auto *r = reinterpret_cast<AioRing *>(c->ctx);
    if (g_use_ring.load() && r->magic == kAioRingMagic && r->incompat_features == 0 &&
        r->header_length == sizeof(AioRing) && r->nr != 0) {
        c->ring = r;
    }
    FLINT_DEBUGLOG(bdev_aio, "aio bdev '%s': new channel reaps with %s", bdev.name.c_str(),
                   c->ring != nullptr ? "the completion ring" : "io_getevents");
    if (int wrc = c->worker.start(this, kQueueDepth); wrc != 0) {
        FLINT_ERRLOG("aio bdev '%s': cannot start the channel's worker thread: %s",
                     bdev.name.c_str(), std::strerror(-wrc));
        io_destroy(c->ctx);
        return wrc;
    }
    c->poller = thread::poller_register(channel_poll, c, 0, "bdev_aio_poll");
    if (c->poller == nullptr) {
        io_destroy(c->ctx);
        return -ENOMEM;
    }
    return 0;
}

void AioDisk::channel_destroy(AioChannel *c) {
    // The layer puts a channel only once its I/O has completed, and its own channel is gone
    // by now, so whatever is left cannot be completed: say so. Neither list nor ring is walked:
    // the BdevIos in them may be freed already.
    if (c->busy() != 0) {
        FLINT_ERRLOG("aio bdev '%s': channel destroyed with %lu I/O in flight", bdev.name.c_str(),
                     static_cast<unsigned long>(c->busy()));
    }
    thread::poller_unregister(&c->poller);
    // Waits for the fallocate calls already posted; the worker touches no BdevIo.
    c->worker.stop();
    // Waits for the kernel to finish with the buffers.
    io_destroy(c->ctx);
}

// ---- Lifetime, info, config ----

AioDisk::~AioDisk() {
    if (buffered_fd >= 0) {
        ::close(buffered_fd);
    }
    if (fd >= 0) {
        ::close(fd);
    }
}

// The disk (and the Bdev in it) goes once done() has returned: the layer is finished with
// it by then.
void AioDisk::destruct(std::function<void()> done) {
    thread::io_device_unregister(this, [this, done = std::move(done)] {
        done();
        delete this;
    });
}

void AioDisk::dump_info(Json::Value &driver_specific) const {
    Json::Value &a = driver_specific["aio"];
    a["filename"] = filename;
    a["block_size_override"] = block_size_override;
    a["readonly"] = false;
    a["fallocate"] = unmap_ok;
}

void AioDisk::write_config(Json::Value &config) const {
    Json::Value e;
    e["method"] = "bdev_aio_create";
    Json::Value &p = e["params"];
    p["name"] = bdev.name;
    p["filename"] = filename;
    if (block_size_override) {
        p["block_size"] = bdev.block_size;
    }
    p["uuid"] = bdev.uuid;
    if (!fallocate_enabled) {
        p["fallocate"] = false;
    }
    config.append(e);
}

int AioDisk::read_size(uint64_t *bytes) const {
    if (is_blockdev) {
        return ioctl(fd, BLKGETSIZE64, bytes) == 0 ? 0 : -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return -errno;
    }
    *bytes = static_cast<uint64_t>(st.st_size);
    return 0;
}

// ---- Create ----

bool is_pow2(uint64_t v) {
    return v != 0 && (v & (v - 1)) == 0;
}

uint32_t round_up_pow2(uint32_t v) {
    uint32_t p = 1;
    while (p < v) {
        p <<= 1;
    }
    return p;
}

bool is_uuid(const std::string &s) {
    if (s.size() != 36) {
        return false;
    }
    for (size_t i = 0; i < s.size(); ++i) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) {
            return false;
        }
    }
    return true;
}

std::string lower(std::string s) {
    for (char &c : s) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return s;
}

// Fills the geometry of an open disk; 0 or -errno with *error.
int probe(AioDisk *d, uint32_t requested_bs, uint64_t *size, std::string *error) {
    const std::string &f = d->filename;
    struct stat st;
    if (fstat(d->fd, &st) != 0) {
        int e = errno;
        *error = "cannot stat '" + f + "': " + std::strerror(e);
        return -e;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        *error = "Invalid parameter 'filename': '" + f + "' is not a regular file or block device";
        return -EINVAL;
    }
    d->is_blockdev = S_ISBLK(st.st_mode);
    // The smallest block O_DIRECT can do here, and the default block size.
    uint32_t detected = 512;
    if (d->is_blockdev) {
        int lbs = 0;
        if (ioctl(d->fd, BLKSSZGET, &lbs) == 0 && lbs >= 512) {
            detected = static_cast<uint32_t>(lbs);
        }
    } else if (d->direct) {
        auto blksize = static_cast<uint32_t>(std::clamp<blksize_t>(st.st_blksize, 512, 4096));
        detected = round_up_pow2(blksize);
    }
    d->mem_align = detected;
    d->len_align = detected;
#ifdef STATX_DIOALIGN
    // Exact O_DIRECT alignment (Linux 6.1+), used to send misaligned buffers the buffered way.
    struct statx sx;
    if (d->direct && statx(d->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN) != 0 && sx.stx_dio_mem_align != 0 &&
        sx.stx_dio_offset_align != 0) {
        d->mem_align = sx.stx_dio_mem_align;
        d->len_align = sx.stx_dio_offset_align;
    }
#endif

    uint32_t bs = requested_bs;
    if (bs == 0) {
        bs = detected;
    } else if (d->direct && bs < detected) {
        *error = "Invalid parameter 'block_size': " + std::to_string(bs) +
                 " is smaller than the block size " + std::to_string(detected) +
                 " that O_DIRECT needs on '" + f + "'";
        return -EINVAL;
    }
    d->block_size_override = requested_bs != 0;
    d->bdev.block_size = bs;

    if (int rc = d->read_size(size); rc != 0) {
        *error = "cannot read the size of '" + f + "': " + std::strerror(-rc);
        return rc;
    }
    if (*size < bs) {
        *error = "Invalid parameter 'filename': '" + f + "' (" + std::to_string(*size) +
                 " bytes) is smaller than one block (" + std::to_string(bs) + " bytes)";
        return -EINVAL;
    }
    d->bdev.num_blocks = *size / bs;
    if (*size % bs != 0) {
        FLINT_NOTICELOG(
            "aio bdev '%s': the last %lu bytes of '%s' are not a whole block and are "
            "not used",
            d->bdev.name.c_str(), static_cast<unsigned long>(*size % bs), f.c_str());
    }

    // Punching a hole past the end changes nothing, and tells whether holes work here.
    if (!d->is_blockdev && d->fallocate_enabled) {
        d->unmap_ok = fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                static_cast<off_t>(*size), bs) == 0;
    }
    return 0;
}

// Opens the file read-write, with O_DIRECT where the file system allows it.
int open_file(AioDisk *d, std::string *error) {
    const std::string &f = d->filename;
    int fd = -1;
    int err = EINVAL;
    if (!g_fail_direct_open.load()) {
        fd = ::open(f.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
        err = errno;
    }
    d->direct = fd >= 0;
    if (fd < 0 && err == EINVAL) {
        fd = ::open(f.c_str(), O_RDWR | O_CLOEXEC);
        err = errno;
        if (fd >= 0) {
            FLINT_NOTICELOG("aio bdev '%s': '%s' does not support O_DIRECT; using buffered I/O",
                            d->bdev.name.c_str(), f.c_str());
        }
    }
    if (fd < 0) {
        if (err == ENOENT) {
            *error = "Invalid parameter 'filename': '" + f + "' does not exist";
        } else if (err == EACCES || err == EPERM || err == EROFS || err == ETXTBSY) {
            *error =
                "Invalid parameter 'filename': '" + f +
                "' cannot be opened for writing (aio bdevs are read-write): " + std::strerror(err);
        } else {
            *error = "Invalid parameter 'filename': cannot open '" + f + "': " + std::strerror(err);
        }
        return -err;
    }
    d->fd = fd;
    if (d->direct) {
        // A second description of the same open file, for buffers O_DIRECT cannot take.
        std::string self = "/proc/self/fd/" + std::to_string(fd);
        d->buffered_fd = ::open(self.c_str(), O_RDWR | O_CLOEXEC);
        if (d->buffered_fd < 0) {
            d->buffered_fd = ::open(f.c_str(), O_RDWR | O_CLOEXEC);
        }
        if (d->buffered_fd < 0) {
            FLINT_WARNLOG(
                "aio bdev '%s': no buffered descriptor for '%s' (%s); misaligned "
                "buffers will fail",
                d->bdev.name.c_str(), f.c_str(), std::strerror(errno));
        }
    }
    return 0;
}

void release(AioDisk *d) {
    thread::io_device_unregister(d, [d] { delete d; });
}

}  // namespace

int create(const Options &o, std::string *error) {
    auto bad = [error](const char *field, const std::string &why) {
        *error = std::string("Invalid parameter '") + field + "': " + why;
        return -EINVAL;
    };
    if (o.name.empty()) {
        return bad("name", "must not be empty");
    }
    if (o.filename.empty()) {
        return bad("filename", "must not be empty");
    }
    if (o.block_size != 0 &&
        (!is_pow2(o.block_size) || o.block_size < 512 || o.block_size > 65536)) {
        return bad("block_size",
                   std::to_string(o.block_size) + " is not a power of two between 512 and 65536");
    }
    std::string uuid = lower(o.uuid);
    if (!uuid.empty() && !is_uuid(uuid)) {
        return bad("uuid", "'" + o.uuid + "' is not a UUID (8-4-4-4-12 hex digits)");
    }
    if (bdev::get_bdev(o.name) != nullptr) {
        *error = "Invalid parameter 'name': bdev name '" + o.name + "' already exists";
        return -EEXIST;
    }

    auto d = std::make_unique<AioDisk>();
    d->filename = o.filename;
    d->fallocate_enabled = o.fallocate;
    d->fdsync_ok.store(g_use_fdsync.load());
    d->bdev.name = o.name;
    d->bdev.product_name = "AIO disk";
    d->bdev.uuid = uuid;
    d->bdev.max_num_segments = IOV_MAX;  // preadv/pwritev refuse more
    d->bdev.module = &module();
    d->bdev.ops = d.get();
    if (int rc = open_file(d.get(), error); rc != 0) {
        return rc;
    }
    uint64_t size = 0;
    if (int rc = probe(d.get(), o.block_size, &size, error); rc != 0) {
        return rc;
    }

    AioDisk *disk = d.release();
    // Registered first: register_bdev may hand the bdev to examine(), which opens channels.
    thread::io_device_register(
        disk,
        [disk](void *ctx) {
            auto *c = new (ctx) AioChannel();
            int rc = disk->channel_create(c);
            if (rc != 0) {
                c->~AioChannel();  // the layer calls destroy only for channels it created
            }
            return rc;
        },
        [disk](void *ctx) {
            auto *c = static_cast<AioChannel *>(ctx);
            disk->channel_destroy(c);
            c->~AioChannel();
        },
        sizeof(AioChannel), "bdev_aio " + o.name);
    int rc = bdev::register_bdev(&disk->bdev);
    if (rc != 0) {
        if (rc == -EEXIST) {
            // Taken by a bdev still being removed, which get_bdev no longer sees, or the uuid.
            *error = uuid.empty()
                         ? "Invalid parameter 'name': bdev name '" + o.name + "' already exists"
                         : "bdev name '" + o.name + "' or uuid '" + uuid + "' already exists";
        } else {
            *error = "could not register aio bdev '" + o.name + "': " + std::strerror(-rc);
        }
        release(disk);
        return rc;
    }
    FLINT_INFOLOG("aio bdev '%s' on '%s': %lu blocks of %u bytes, %s I/O%s", o.name.c_str(),
                  o.filename.c_str(), static_cast<unsigned long>(disk->bdev.num_blocks),
                  disk->bdev.block_size, disk->direct ? "direct" : "buffered",
                  disk->unmap_ok ? ", unmap by punching holes" : "");
    return 0;
}

void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done) {
    // As malloc and null: a claimed bdev is refused, not hot-removed.
    bdev::delete_module_bdev(&module(), name, "aio", std::move(done));
}

int rescan(const std::string &name, std::string *error) {
    AioDisk *d = find_disk(name);
    if (d == nullptr) {
        *error = bdev::get_bdev(name) == nullptr
                     ? "No such device: no bdev named '" + name + "'"
                     : "No such device: bdev '" + name + "' is not an aio bdev";
        return -ENODEV;
    }
    uint64_t size = 0;
    if (int rc = d->read_size(&size); rc != 0) {
        *error = "cannot read the size of '" + d->filename + "': " + std::strerror(-rc);
        return rc;
    }
    uint64_t old_blocks = d->bdev.num_blocks;
    uint64_t blocks = size / d->bdev.block_size;
    if (blocks == old_blocks) {
        return 0;
    }
    int rc = bdev::notify_resize(&d->bdev, blocks);
    if (rc == -EBUSY) {
        *error = "aio bdev '" + name + "' shrank from " + std::to_string(old_blocks) + " to " +
                 std::to_string(blocks) + " blocks while open; close it first";
    } else if (rc == -EINVAL) {
        *error = "'" + d->filename + "' (" + std::to_string(size) +
                 " bytes) is now smaller than one block (" + std::to_string(d->bdev.block_size) +
                 " bytes)";
    } else if (rc != 0) {
        *error = "could not resize aio bdev '" + name + "': " + std::strerror(-rc);
    } else {
        FLINT_NOTICELOG("aio bdev '%s' resized from %lu to %lu blocks", name.c_str(),
                        static_cast<unsigned long>(old_blocks), static_cast<unsigned long>(blocks));
    }
    return rc;
}

void register_module() {
    const auto &mods = bdev::modules();
    if (std::find(mods.begin(), mods.end(), &module()) == mods.end()) {
        bdev::register_module(&module());
    }
    register_rpcs();
}

namespace testing {

void set_fail_direct_open(bool on) {
    g_fail_direct_open.store(on);
}

void set_use_completion_ring(bool on) {
    g_use_ring.store(on);
}

bool uses_direct_io(const std::string &name) {
    AioDisk *d = find_disk(name);
    return d != nullptr && d->direct;
}

void set_use_fdsync(bool on) {
    g_use_fdsync.store(on);
}

void hold_workers(bool on) {
    g_hold_workers.store(on, std::memory_order_release);
}

uint32_t queue_depth() {
    return kQueueDepth;
}

bool channel_uses_ring(const std::string &name) {
    AioDisk *d = find_disk(name);
    if (d == nullptr) {
        return false;
    }
    thread::IoChannel *ch = thread::get_io_channel(d);
    if (ch == nullptr) {
        return false;
    }
    bool ring = static_cast<AioChannel *>(thread::channel_ctx(ch))->ring != nullptr;
    thread::put_io_channel(ch);
    return ring;
}

}  // namespace testing

}  // namespace flint::bdev_aio
