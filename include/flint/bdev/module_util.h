#pragma once
// Helpers bdev modules share: deferred completion, the create/delete control flow and its
// messages, uuid handling and SPDK's metadata params. Control-path helpers run on the app
// thread; CompletionQueue and CompletionDevice::queue are data path (no allocation, lock,
// exception or log).

#include <cstddef>
#include <functional>
#include <new>
#include <string>

#include "flint/bdev/module.h"
#include "flint/jsonrpc/jsonrpc.h"
#include "flint/thread/thread.h"

namespace flint::bdev {

// A FIFO of BdevIos a module has finished but not yet completed, so that no completion runs
// inside the caller's submit call. One per channel, used on that channel's thread only.
// No allocation: push() threads the list through the first kDriverCtxBytes bytes of
// io->driver_ctx, which hold the link and the status from push() until complete_all()
// hands the io back; the module must not use those bytes meanwhile (the rest of
// driver_ctx is left alone).
class CompletionQueue {
    struct Link {
        BdevIo *next;
        NvmeStatus status;
    };
    static_assert(sizeof(Link) <= BdevIo::kDriverCtxSize && alignof(Link) <= 16,
                  "the queue's link must fit at the start of driver_ctx");

public:
    static constexpr size_t kDriverCtxBytes = sizeof(Link);

    // Queues io to be completed with status by the next complete_all().
    void push(BdevIo *io, NvmeStatus status) {
        new (io->driver_ctx) Link{nullptr, status};
        if (tail_ != nullptr) {
            link(tail_)->next = io;
        } else {
            head_ = io;
        }
        tail_ = io;
    }
    // Completes everything queued, in order, with io_complete. Detaches the list first: an
    // io pushed by a completion callback waits for the next call. Returns thread::kBusy if
    // it completed anything, thread::kIdle otherwise (a poller's return value).
    int complete_all();
    bool empty() const { return head_ == nullptr; }

private:
    static Link *link(BdevIo *io) { return std::launder(reinterpret_cast<Link *>(io->driver_ctx)); }
    BdevIo *head_ = nullptr;
    BdevIo *tail_ = nullptr;
};

// A module-wide io_device for modules that finish I/O inside submit() (malloc, null): each
// thread's channel is a CompletionQueue drained by an active poller. Lives as long as the
// module (make it a member of the module's static object).
class CompletionDevice {
    struct Channel {
        CompletionQueue queue;
        thread::Poller *poller = nullptr;
    };

public:
    // name: the io_device's name (also prefixes its log messages); poller_name: the name of
    // each channel's poller. Both must outlive the device (string literals).
    CompletionDevice(const char *name, const char *poller_name)
        : name_(name), poller_name_(poller_name) {}
    CompletionDevice(const CompletionDevice &) = delete;
    CompletionDevice &operator=(const CompletionDevice &) = delete;

    // Registers the io_device unless it is: 0, or -EBUSY while unregister() has not finished.
    int ensure_registered();
    // Unregisters it (at module fini); ensure_registered() may register it again once every
    // channel is gone. Does nothing unless it is registered.
    void unregister();
    // What the module's BdevOps::io_device() returns.
    void *io_device() { return this; }
    // The queue of a channel of this device: the channel submit() receives.
    static CompletionQueue &queue(thread::IoChannel *ch) {
        return static_cast<Channel *>(thread::channel_ctx(ch))->queue;
    }

private:
    static int poll(void *channel);
    enum class State { None, Registered, Unregistering };
    const char *name_;
    const char *poller_name_;
    State state_ = State::None;
};

// The canonical 8-4-4-4-12 hex form, lower case (as SPDK prints it). Returns false, leaving
// *out alone, if in is not in that form (in either case); in and out may be the same string.
bool normalize_uuid(const std::string &in, std::string *out);
// A uuid given to a module's create call: empty and the nil uuid give "" (register_bdev
// then generates one), anything else as normalize_uuid (false if it is not a uuid).
bool normalize_create_uuid(const std::string &in, std::string *out);

// Checked before a module builds a bdev: 0 if no bdev has the name (or alias) name and
// none has uuid (a normalized uuid, or "" to skip the check); otherwise -EEXIST with
// *error naming the one taken.
int check_name_and_uuid_free(const std::string &name, const std::string &uuid, std::string *error);
// The message for a failed register_bdev of a bdev of module kind ("malloc"), with the
// uuid it was given ("" if none): -EEXIST names what may be taken, by a bdev still being
// removed; anything else is "could not register <kind> bdev '<name>': <strerror>".
std::string register_error(int rc, const char *kind, const std::string &name,
                           const std::string &uuid);

using DeleteDone = std::function<void(int errno_rc, const std::string &message)>;
// Deletes bdev name (or alias) of module m, which kind names in messages ("malloc").
// done(0, "") once it is unregistered and destructed, after every descriptor has closed;
// otherwise done(-errno, message) with -ENODEV ("No such device: no <kind> bdev named
// '<name>'", also for another module's bdev, or "... is already being deleted"), -EBUSY
// ("bdev '<name>' is claimed by '<owner>'") or unregister_bdev's error. done runs exactly
// once, possibly before this returns. It relies on unregister_bdev either returning an
// error without ever calling its callback or returning 0 and calling it exactly once.
void delete_module_bdev(Module *m, const std::string &name, const char *kind, DeleteDone done);

// Checks what a memory-backed module is asked to create: num_blocks > 0, block_size one of
// 512, 1024, 2048, 4096 (no metadata formats), num_blocks * block_size within max_bytes, and
// uuid empty or a uuid. False with *error naming the parameter otherwise.
bool validate_geometry(uint64_t num_blocks, uint32_t block_size, uint64_t max_bytes,
                       const std::string &uuid, std::string *error);

// SPDK's save_config writes metadata and protection params for malloc and null bdevs; Flint
// has no metadata. Takes those params from d and accepts only their no-metadata values
// (physical_block_size 0 or a multiple of block_size, md_size/dif_type/dif_pi_format 0,
// md_interleave/dif_is_head_of_md any bool), so SPDK's configs load; otherwise throws
// jsonrpc::Error kInvalidParams naming the field.
void decode_no_metadata_params(jsonrpc::ParamDecoder &d, uint32_t block_size);
// The handler of a bdev_<kind>_delete RPC: decodes {"name"}, calls destroy (the module's
// delete, e.g. delete_module_bdev) and answers true, or destroy's error as code and message.
void delete_rpc(const jsonrpc::RequestPtr &req,
                const std::function<void(const std::string &name, DeleteDone done)> &destroy);

}  // namespace flint::bdev
