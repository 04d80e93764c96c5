#pragma once
// The NVMe-oF target: its startup/shutdown state machine and one poll group per core.
// Transports and NVMe-oF subsystems attach to this in later layers.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "flint/thread/thread.h"
#include "flint/util/cpuset.h"

namespace flint::nvmf {

enum class TgtState {
    None,
    CreateTarget,
    CreatePollGroups,
    StartSubsystems,
    Running,
    FiniStopSubsystems,
    FiniDestroySubsystems,
    FiniDestroyPollGroups,
    FiniDestroyTarget,
    Stopped,
    Error,
};
const char *tgt_state_name(TgtState s);

// Options set before init by nvmf_set_config / nvmf_set_max_subsystems.
struct TgtOptions {
    uint32_t max_subsystems = 1024;
    std::optional<util::CpuSet> poll_groups_mask;
};

// Per-poll-group state; lives in the poll group thread's io_channel of the target.
struct PollGroup {
    std::string name;
    uint64_t admin_qpairs = 0;
    uint64_t io_qpairs = 0;
    uint64_t current_admin_qpairs = 0;
    uint64_t current_io_qpairs = 0;
    uint64_t pending_bdev_io = 0;
    uint64_t completed_nvme_io = 0;
};

TgtOptions &tgt_options();
TgtState tgt_state();

// Registers the "nvmf" subsystem and its RPC methods with the application. It depends on
// the "bdev" subsystem, which must be registered too (bdev::register_subsystem()).
void register_subsystem();

// Walks every poll group on its own thread; cpl runs on the calling thread.
void for_each_poll_group(std::function<void(PollGroup &)> fn, std::function<void()> cpl);

}  // namespace flint::nvmf
