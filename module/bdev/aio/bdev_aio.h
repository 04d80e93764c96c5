#pragma once
// The aio bdev module: a regular file or block device driven by Linux native AIO, as SPDK's
// bdev_aio. Control calls run on the app thread.

#include <cstdint>
#include <functional>
#include <string>

namespace flint::bdev_aio {

struct Options {
    std::string name;
    std::string filename;
    uint32_t block_size = 0;  // 0: detect; else a power of two in 512..65536
    std::string uuid;         // 8-4-4-4-12 hex; empty: generated
    bool fallocate = true;    // false: no unmap and no native write zeroes
};

// Registers the module with the bdev layer and adds its RPC methods; idempotent.
void register_module();

// Opens the file and registers the bdev. Returns 0, or a negative errno with *error naming
// the problem ("Invalid parameter 'x': ..." when a parameter is at fault): -EINVAL (bad
// value, file too small, block size below what O_DIRECT needs), -ENOENT, -EACCES/-EROFS/
// -EPERM (cannot open for read-write), -EEXIST (name or uuid taken).
int create(const Options &opts, std::string *error);
// Unregisters the aio bdev called name. done(0, "") once it is gone, after every descriptor
// has closed; done(-errno, message) otherwise: -ENODEV if there is no such bdev or it is not
// an aio bdev. done may run before destroy returns.
void destroy(const std::string &name, std::function<void(int rc, const std::string &error)> done);
// Re-reads the file's size; a change is announced with a Resize event. Returns 0, or a
// negative errno with *error: -ENODEV (no such aio bdev), -EBUSY (shrunk while open),
// -EINVAL (now smaller than one block), or the errno of a failed stat.
int rescan(const std::string &name, std::string *error);

// Hooks for tests; not for production use.
namespace testing {
// Makes O_DIRECT opens fail with EINVAL, as on a file system without O_DIRECT.
void set_fail_direct_open(bool on);
// false: reap completions with io_getevents instead of reading the kernel's ring.
void set_use_completion_ring(bool on);
// Whether the named aio bdev does direct I/O; false if there is none.
bool uses_direct_io(const std::string &name);
// Whether the named aio bdev's channel on the calling thread reads the completion ring.
bool channel_uses_ring(const std::string &name);
// false: bdevs created from now on flush with fdatasync on the worker, as when the kernel
// refuses IOCB_CMD_FDSYNC.
void set_use_fdsync(bool on);
// true: every channel's worker stalls before its next fallocate or fdatasync until this is
// set back to false or its channel is destroyed.
void hold_workers(bool on);
// Requests one channel keeps in the kernel, and in its worker.
uint32_t queue_depth();
}  // namespace testing

}  // namespace flint::bdev_aio
