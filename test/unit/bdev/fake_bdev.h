#pragma once
// A fake bdev module for the bdev layer's unit tests: it holds every I/O until the test
// completes it, keeps the data in memory when asked to, and records what reached it.
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "flint/bdev/module.h"

namespace flint::test {

struct FakeModule : bdev::Module {
    const char *name() const override { return "fake"; }
};
inline FakeModule g_fake_module;

struct FakeOps : bdev::BdevOps {
    std::vector<uint8_t> data;  // the medium; empty: reads and writes move no data
    uint32_t bs = 512;
    // Optional I/O types; read, write and reset are always supported.
    bool write_zeroes = false;
    bool compare = false;
    bool flush = false;
    bool abort = false;       // aborts a pending I/O at once, inside submit
    std::string config_name;  // non-empty: save_config emits fake_create with this name

    std::deque<bdev::BdevIo *> pending;
    std::vector<std::pair<bdev::IoType, uint64_t>> submitted;  // (type, offset), arrival order
    size_t max_pending = 0;
    int resets = 0;
    int misaligned_seen = 0;  // iovecs off a 512-byte boundary that reached the module
    bool destructed = false;

    void submit(thread::IoChannel *, bdev::BdevIo *io) override {
        submitted.emplace_back(io->type, io->offset_blocks);
        for (int i = 0; i < io->iovcnt; ++i) {
            misaligned_seen +=
                ((reinterpret_cast<uintptr_t>(io->iovs[i].iov_base) | io->iovs[i].iov_len) & 511) !=
                0;
        }
        if (io->type != bdev::IoType::Abort) {
            pending.push_back(io);
            max_pending = std::max(max_pending, pending.size());
            return;
        }
        auto it = std::find(pending.begin(), pending.end(), io->bio_to_abort);
        if (it == pending.end()) {
            bdev::io_complete(io, bdev::nvme_status::kInvalidField);
            return;
        }
        pending.erase(it);
        bdev::io_complete(io->bio_to_abort, bdev::nvme_status::kAbortedByRequest);
        bdev::io_complete(io, bdev::nvme_status::kSuccess);
    }
    bool supports(bdev::IoType t) const override {
        using bdev::IoType;
        return t == IoType::Read || t == IoType::Write || t == IoType::Reset ||
               (t == IoType::WriteZeroes && write_zeroes) || (t == IoType::Compare && compare) ||
               (t == IoType::Flush && flush) || (t == IoType::Abort && abort);
    }
    void *io_device() override { return this; }
    void destruct(std::function<void()> done) override {
        destructed = true;
        done();
    }
    void write_config(Json::Value &config) const override {
        if (config_name.empty()) {
            return;
        }
        Json::Value e;
        e["method"] = "fake_create";
        e["params"]["name"] = config_name;
        config.append(e);
    }

    // Completes io with status, carrying out a successful request on `data` first; a
    // compare that differs completes with kCompareFailure instead.
    void complete(bdev::BdevIo *io, bdev::NvmeStatus status) {
        if (status.ok()) {
            status = carry_out(io);
        }
        bdev::io_complete(io, status);
    }
    void complete_one(bdev::NvmeStatus status = bdev::nvme_status::kSuccess) {
        bdev::BdevIo *io = pending.front();
        pending.pop_front();
        complete(io, status);
    }

private:
    bdev::NvmeStatus carry_out(bdev::BdevIo *io) {
        using bdev::IoType;
        if (io->type == IoType::Reset) {
            ++resets;
        }
        if (data.empty()) {
            return bdev::nvme_status::kSuccess;
        }
        uint64_t off = io->offset_blocks * bs;
        bool same = true;
        switch (io->type) {
            case IoType::Read:
            case IoType::Write:
            case IoType::Compare:
                for (int i = 0; i < io->iovcnt; ++i) {
                    auto *base = static_cast<uint8_t *>(io->iovs[i].iov_base);
                    size_t len = io->iovs[i].iov_len;
                    if (io->type == IoType::Read) {
                        std::memcpy(base, data.data() + off, len);
                    } else if (io->type == IoType::Write) {
                        std::memcpy(data.data() + off, base, len);
                    } else {
                        same = same && std::memcmp(base, data.data() + off, len) == 0;
                    }
                    off += len;
                }
                break;
            case IoType::WriteZeroes:
                std::memset(data.data() + off, 0, bdev::io_bytes(io));
                break;
            default:
                break;
        }
        return same ? bdev::nvme_status::kSuccess : bdev::nvme_status::kCompareFailure;
    }
};

// Counts completions; on_done records one and frees the bdev_io.
struct Result {
    int done = 0;
    int ok = 0;
    bdev::NvmeStatus status;
};

inline void on_done(bdev::BdevIo *io, bool ok, void *arg) {
    auto *r = static_cast<Result *>(arg);
    ++r->done;
    r->ok += ok ? 1 : 0;
    r->status = bdev::io_status(io);
    bdev::free_io(io);
}

}  // namespace flint::test
