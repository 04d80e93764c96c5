#pragma once
// Bookkeeping shared by the bdev layer's files.

#include <atomic>
#include <mutex>

#include "flint/bdev/module.h"

namespace flint::bdev {

class Desc {
public:
    Bdev *bdev;
    bool write;
    EventCallback on_event;
    thread::Thread *thread;
    bool claimed = false;
};

struct BdevState {
    std::atomic<bool> removing{false};
    std::atomic<uint64_t> num_blocks{0};  // read on the data path; Bdev::num_blocks mirrors it
    std::vector<Desc *> descs;            // under g_mu
    Desc *claim = nullptr;                // under g_mu
    std::string claim_owner;              // under g_mu
    std::function<void(int)> unregister_done;
    std::atomic<bool> reset_in_progress{false};
    std::mutex stats_mu;  // control path: channels add their stats here when destroyed
    IoStats closed_stats;
};

struct BdevChannel;

struct BdevIo::Private {
    IoCallback cb;
    void *cb_arg;
    BdevChannel *ch;
    NvmeStatus status;
    uint64_t submit_tsc;
    BdevIo *next_free;
    // Set for I/O the layer drives itself (emulation, reset): runs instead of cb.
    void (*on_done)(BdevIo *io);
    iovec iov;  // single-buffer read/write
    // Requests the layer runs as a series of chunks (write zeroes emulation, splitting on
    // the optimal I/O boundary): where the next chunk starts and what the caller asked.
    uint64_t chunk_offset;
    uint64_t chunk_remaining;
    uint64_t orig_offset;
    uint64_t orig_blocks;
    IoType orig_type;
    iovec *orig_iovs;
    int orig_iovcnt;
    int iov_idx;     // splitting: the caller's iovec the next chunk starts in
    size_t iov_off;  // and the byte offset within it
    static constexpr int kSplitIovs = 16;
    iovec split_iov[kSplitIovs];
};

struct BdevChannel {
    Bdev *bdev;
    thread::IoChannel *module_ch;
    BdevIo *free_list;
    std::unique_ptr<BdevIo[]> ios;
    std::unique_ptr<BdevIo::Private[]> privs;
    uint32_t pool_size;
    uint64_t outstanding;
    bool frozen;  // a reset is in progress
    IoStats stats;
    IoWaitEntry *wait_head;  // callers waiting for a free bdev_io, FIFO
    IoWaitEntry *wait_tail;
};

// Registry lock: control path only (open, close, register, claims).
std::mutex &registry_mutex();
// The channel context of a bdev io_channel.
inline BdevChannel *bdev_channel(thread::IoChannel *ch) {
    return static_cast<BdevChannel *>(thread::channel_ctx(ch));
}
// Creates and destroys a bdev's channels (registered as the bdev's io_device callbacks).
int channel_create(Bdev *bdev, void *ctx);
void channel_destroy(Bdev *bdev, void *ctx);
// bdev_channel.cpp: the channel's free bdev_ios; nullptr when none is free.
BdevIo *pop_free_io(BdevChannel *bc);

// bdev_io.cpp: the checks every submission makes and a bdev_io for it, or nullptr with *rc set.
bool is_write_type(IoType t);
BdevIo *prepare(Desc *d, thread::IoChannel *ch, IoType type, uint64_t offset, uint64_t num,
                IoCallback cb, void *cb_arg, int *rc);
// The stages of a request. dispatch() runs the stages that may hold a request
// back (and resume it later), then execute(), which sends it to the module by type: start()
// as it is, start_rw() split to the bdev's limits, or start_write_zeroes_emulated().
void dispatch(BdevIo *io);
void execute(BdevIo *io);
void start(BdevIo *io);
// Completes on a later turn of this thread: never inside the submit call.
void complete_later(BdevIo *io, NvmeStatus status);
// Accounts the request in its channel's statistics and calls the user's callback.
void finish(BdevIo *io);
void account(IoStats &s, const BdevIo *io, uint64_t ticks, bool ok);
// bdev_split.cpp
void start_rw(BdevIo *io);
void start_write_zeroes_emulated(BdevIo *io);

// A zeroed DMA buffer for write zeroes emulation and its size.
void *zero_buffer();
size_t zero_buffer_size();
void free_zero_buffer();

}  // namespace flint::bdev
