#pragma once
// The block device layer, user side: open a bdev, get a per-thread channel, submit I/O.
//
// Threading: a Desc may be used from any thread, but each thread submits through its own
// channel (get_io_channel on that thread). Completions run on the submitting thread.
// Data path (submit, complete, free_io): no allocation, lock, exception or log.

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flint/thread/thread.h"

namespace flint::bdev {

enum class IoType : uint8_t {
    Read,
    Write,
    Unmap,
    WriteZeroes,
    Flush,
    Reset,
    Compare,
    CompareAndWrite,
    Abort,
};
inline constexpr int kNumIoTypes = 9;
const char *io_type_name(IoType t);

// The outcome of an I/O in NVMe terms, so a target can report it unchanged.
struct NvmeStatus {
    uint8_t sct = 0;  // status code type: 0 generic, 2 media and data integrity
    uint8_t sc = 0;   // status code
    bool ok() const { return sct == 0 && sc == 0; }
};
namespace nvme_status {
inline constexpr NvmeStatus kSuccess{0, 0x00};
inline constexpr NvmeStatus kInvalidField{0, 0x02};
inline constexpr NvmeStatus kDataTransferError{0, 0x04};
inline constexpr NvmeStatus kInternalError{0, 0x06};
inline constexpr NvmeStatus kAbortedByRequest{0, 0x07};
inline constexpr NvmeStatus kAbortedSqDeletion{0, 0x08};
inline constexpr NvmeStatus kLbaOutOfRange{0, 0x80};
inline constexpr NvmeStatus kCompareFailure{2, 0x85};
inline constexpr NvmeStatus kUnrecoveredReadError{2, 0x81};
}  // namespace nvme_status

struct Bdev;
struct BdevIo;
class Desc;

// Completion callback: success mirrors status().ok(). The callee must call free_io(io).
using IoCallback = void (*)(BdevIo *io, bool success, void *cb_arg);

enum class EventType { Remove, Resize, MediaManagement };
using EventCallback = std::function<void(EventType type, Bdev *bdev)>;

// Opens the named bdev (or alias) on the calling thread; the event callback runs there.
// Returns 0, -ENODEV (no such bdev, or being removed) or -EPERM (write open of a claimed
// bdev, as in SPDK).
int open(const std::string &name, bool write, EventCallback on_event, Desc **out);
// Closes on the thread that opened it. Outstanding I/O must have completed.
void close(Desc *desc);
Bdev *desc_bdev(Desc *desc);

// Exclusive write claim for `owner` (a module or a target namespace): no other descriptor
// may write while it is held. -EPERM if another descriptor holds a claim or is open for
// write; -EBADF if this one is read-only. Released by release_claim or close.
int claim(Desc *desc, const std::string &owner);
void release_claim(Desc *desc);

// The calling thread's channel for the descriptor's bdev (reference counted).
thread::IoChannel *get_io_channel(Desc *desc);

// Submission. Each returns 0 (the callback will run, on this thread, possibly later),
// -EINVAL (range outside the bdev, bad iov), -EBADF (write on a read-only descriptor),
// -ENODEV (the bdev is being removed), -ENOTSUP (type not supported and not emulated) or
// -ENOMEM (no free bdev_io for this thread: see queue_io_wait).
// A read may pass a null buffer (read) or one iovec with a null base (readv): the layer
// then reads into an iobuf buffer, found in io->iovs[0] by the callback and given back by
// free_io(). Such a read waits for a buffer when the pool is empty; it is never failed for
// that. At most iobuf's large_bufsize bytes. Writes and compares need the caller's buffers.
int read(Desc *d, thread::IoChannel *ch, void *buf, uint64_t offset_blocks, uint64_t num_blocks,
         IoCallback cb, void *cb_arg);
int readv(Desc *d, thread::IoChannel *ch, const iovec *iov, int iovcnt, uint64_t offset_blocks,
          uint64_t num_blocks, IoCallback cb, void *cb_arg);
int write(Desc *d, thread::IoChannel *ch, void *buf, uint64_t offset_blocks, uint64_t num_blocks,
          IoCallback cb, void *cb_arg);
int writev(Desc *d, thread::IoChannel *ch, const iovec *iov, int iovcnt, uint64_t offset_blocks,
           uint64_t num_blocks, IoCallback cb, void *cb_arg);
int unmap(Desc *d, thread::IoChannel *ch, uint64_t offset_blocks, uint64_t num_blocks,
          IoCallback cb, void *cb_arg);
// Emulated with writes of zeroes when the module has no native write zeroes.
int write_zeroes(Desc *d, thread::IoChannel *ch, uint64_t offset_blocks, uint64_t num_blocks,
                 IoCallback cb, void *cb_arg);
int flush(Desc *d, thread::IoChannel *ch, uint64_t offset_blocks, uint64_t num_blocks,
          IoCallback cb, void *cb_arg);
// Compares the blocks with the buffers; a mismatch completes with kCompareFailure.
// -ENOTSUP when the module has no compare.
int comparev(Desc *d, thread::IoChannel *ch, const iovec *iov, int iovcnt, uint64_t offset_blocks,
             uint64_t num_blocks, IoCallback cb, void *cb_arg);
// Compares the blocks with cmp_iov and, only if they match, writes write_iov: atomic with
// respect to every other write of the range, from any thread (the layer holds an LBA range
// lock across both steps). A mismatch completes with kCompareFailure and writes nothing.
// -EINVAL also when num_blocks exceeds the bdev's acwu or a step would need splitting;
// -ENOTSUP when the module has no compare or write. Taking the lock messages every
// channel of the bdev: a slow path, as in SPDK.
int comparev_and_writev(Desc *d, thread::IoChannel *ch, const iovec *cmp_iov, int cmp_iovcnt,
                        const iovec *write_iov, int write_iovcnt, uint64_t offset_blocks,
                        uint64_t num_blocks, IoCallback cb, void *cb_arg);
// Aborts every request submitted on ch whose cb_arg is bio_cb_arg and that has not
// completed: those still held by the layer (QoS, range locks, buffers) complete with
// kAbortedByRequest; those at the module are aborted there if it supports Abort. The
// abort succeeds if at least one request matched and all matched were aborted. -EBADF on
// a read-only descriptor; -ENOMEM without a free bdev_io.
int abort(Desc *d, thread::IoChannel *ch, void *bio_cb_arg, IoCallback cb, void *cb_arg);
// Quiesces every channel of the bdev (I/O submitted meanwhile completes with
// kAbortedSqDeletion), waits for outstanding I/O to finish, resets the device, resumes.
// -EBUSY while another reset of the bdev is in progress.
int reset(Desc *d, thread::IoChannel *ch, IoCallback cb, void *cb_arg);

// What to do once a bdev_io is free again after -ENOMEM. The caller owns the entry (no
// allocation); it must stay valid until cb runs.
struct IoWaitEntry {
    void (*cb)(void *arg) = nullptr;
    void *cb_arg = nullptr;
    IoWaitEntry *next = nullptr;  // the layer's
};
// Queues entry on the calling thread's io-wait queue (shared by all its channels, as in
// SPDK): cb runs on this thread once a bdev_io is free for it, in queue order, for as long
// as the thread has one (a bdev_io freed on this thread, or one taken back from the global
// pool by a retry poller that runs every 100 us while anyone waits). Use it only after a
// submit returned -ENOMEM; returns -EINVAL if this thread still has a free bdev_io cached
// (submit again) or cb is null.
int queue_io_wait(thread::IoChannel *ch, IoWaitEntry *entry);

NvmeStatus io_status(const BdevIo *io);
IoType io_type(const BdevIo *io);
// Returns a completed bdev_io to its channel.
void free_io(BdevIo *io);

struct IoStats {
    uint64_t bytes_read = 0, num_read_ops = 0;
    uint64_t bytes_written = 0, num_write_ops = 0;
    uint64_t bytes_unmapped = 0, num_unmap_ops = 0;
    uint64_t bytes_copied = 0, num_copy_ops = 0;
    uint64_t read_latency_ticks = 0, write_latency_ticks = 0, unmap_latency_ticks = 0;
    uint64_t max_read_latency_ticks = 0, min_read_latency_ticks = UINT64_MAX;
    uint64_t max_write_latency_ticks = 0, min_write_latency_ticks = UINT64_MAX;
    uint64_t num_other_ops = 0;  // flush, reset, compare, write zeroes
    uint64_t io_errors = 0;
    void add(const IoStats &o);
};

// Sums a bdev's statistics over its live channels and those already closed; cb runs on
// the calling thread.
void get_iostat(Bdev *bdev, std::function<void(const IoStats &)> cb);

struct ChannelStats {
    uint64_t thread_id;
    std::string thread_name;
    IoStats stats;
};
// The statistics of each live channel of a bdev (one per thread that has one), gathered on
// each channel's own thread; cb runs on the calling thread.
void get_channel_iostats(Bdev *bdev, std::function<void(const std::vector<ChannelStats> &)> cb);

struct Options {
    // bdev_ios in the one global pool that every channel draws from (read at layer_init);
    // channels reserve nothing, so their number is not limited by it. bdev_set_options
    // requires at least bdev_io_cache_size * (threads + 1), as SPDK does.
    uint32_t bdev_io_pool_size = 65535;
    // Free bdev_ios each thread keeps for itself before returning them to the pool (SPDK's
    // default). Filled as I/O completes, not up front.
    uint32_t bdev_io_cache_size = 256;
    // iobuf buffers (data of reads without a buffer, bounce buffers) each thread caches,
    // per pool (SPDK's defaults).
    uint32_t iobuf_small_cache_size = 128;
    uint32_t iobuf_large_cache_size = 16;
};
Options &options();

// Registers the "bdev" subsystem (and "iobuf", which it depends on) and the generic bdev
// RPCs with the application.
void register_subsystem();

// The layer's own resources: the bdev_io pool sized from options(), and the per-thread
// channel that caches it. The "bdev" subsystem calls these at init and fini; a program or
// test that drives the layer without the subsystem calls them itself, on a thread.
// layer_init returns 0, -EALREADY or -ENOMEM.
int layer_init();
// Once every thread has dropped its bdev channels, checks that all bdev_ios are back (an
// error names how many are not), frees the pool, then runs done on the calling thread.
void layer_fini(std::function<void()> done);

}  // namespace flint::bdev
