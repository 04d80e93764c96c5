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
// -ENOMEM (no free bdev_io on this channel: retry after a completion).
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
// Queues entry on ch: cb runs on this thread once a bdev_io of ch has been freed, in queue
// order, one entry per freed bdev_io. Use it only after a submit returned -ENOMEM (returns
// -EINVAL if the channel has a free bdev_io or cb is null).
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
    // bdev_ios across all channels. Each channel reserves its whole cache from it, so the
    // pool also caps the number of (bdev, thread) channels: 65535 / 256 = 255 by default.
    uint32_t bdev_io_pool_size = 65535;
    uint32_t bdev_io_cache_size = 256;  // bdev_ios preallocated per channel (SPDK's default)
};
Options &options();

// Registers the "bdev" subsystem and the generic bdev RPCs with the application.
void register_subsystem();

}  // namespace flint::bdev
