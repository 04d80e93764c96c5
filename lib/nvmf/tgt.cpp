#include "flint/nvmf/tgt.h"

#include <cerrno>
#include <cstdio>
#include <memory>
#include <new>
#include <utility>

#include "flint/env/env.h"
#include "flint/event/app.h"
#include "flint/event/subsystem.h"
#include "flint/util/log.h"

FLINT_LOG_FLAG(nvmf);

namespace flint::nvmf {

void write_config(Json::Value &config);
void register_rpcs(jsonrpc::Registry &r);

namespace {

// The target is the io_device whose per-thread channels are the poll groups.
struct Target {
    TgtState state = TgtState::None;
    TgtOptions opts;
    std::vector<thread::Thread *> pg_threads;
    uint32_t pending = 0;  // poll groups still being created or destroyed
    bool registered = false;
    std::function<void(int)> init_done;
    std::function<void()> fini_done;
};

Target g_tgt;

void advance_state();

void set_state(TgtState s) {
    FLINT_DEBUGLOG(nvmf, "target state %s -> %s", tgt_state_name(g_tgt.state), tgt_state_name(s));
    g_tgt.state = s;
}

// Runs on the app thread when one poll group finished being created or destroyed.
void poll_group_step_done(bool ok) {
    if (!ok) {
        set_state(TgtState::Error);
    }
    if (--g_tgt.pending == 0) {
        if (g_tgt.state == TgtState::CreatePollGroups) {
            set_state(TgtState::StartSubsystems);
        } else if (g_tgt.state == TgtState::FiniDestroyPollGroups) {
            g_tgt.pg_threads.clear();
            set_state(TgtState::FiniDestroyTarget);
        }
        advance_state();
    }
}

void report_to_app(bool ok) {
    thread::send_fn(event::app_thread(), [ok] { poll_group_step_done(ok); });
}

void create_poll_groups() {
    util::CpuSet cores = g_tgt.opts.poll_groups_mask.value_or(env::cores());
    uint32_t index = 0;
    for (uint32_t core : cores.cores()) {
        char name[64];
        std::snprintf(name, sizeof(name), "nvmf_tgt_poll_group_%03u", index);
        util::CpuSet one;
        one.set(core);
        thread::Thread *t = thread::create(name, &one);
        if (t == nullptr) {
            FLINT_ERRLOG("cannot create poll group thread on core %u", core);
            set_state(TgtState::Error);
            break;
        }
        g_tgt.pg_threads.push_back(t);
        ++g_tgt.pending;
        thread::send_fn(t, [] { report_to_app(thread::get_io_channel(&g_tgt) != nullptr); });
        ++index;
    }
    if (g_tgt.pending == 0) {
        advance_state();
    }
}

void destroy_poll_groups() {
    if (g_tgt.pg_threads.empty()) {
        set_state(TgtState::FiniDestroyTarget);
        advance_state();
        return;
    }
    g_tgt.pending = static_cast<uint32_t>(g_tgt.pg_threads.size());
    for (thread::Thread *t : g_tgt.pg_threads) {
        thread::send_fn(t, [] {
            // The channel destroy callback reports back; then the thread can exit.
            thread::IoChannel *ch = thread::get_io_channel(&g_tgt);
            thread::put_io_channel(ch);  // the reference just taken
            thread::put_io_channel(ch);  // the poll group's own reference
            thread::current()->exit();
        });
    }
}

void advance_state() {
    // One step per call; each asynchronous step calls back in when done.
    while (true) {
        TgtState prev = g_tgt.state;
        switch (g_tgt.state) {
            case TgtState::None:
                set_state(TgtState::CreateTarget);
                break;
            case TgtState::CreateTarget: {
                g_tgt.opts = tgt_options();
                thread::io_device_register(
                    &g_tgt,
                    [](void *ctx) {
                        auto *pg = new (ctx) PollGroup{};
                        pg->name = thread::current()->name();
                        return 0;
                    },
                    [](void *ctx) {
                        static_cast<PollGroup *>(ctx)->~PollGroup();
                        report_to_app(true);
                    },
                    sizeof(PollGroup), "nvmf_tgt");
                g_tgt.registered = true;
                set_state(TgtState::CreatePollGroups);
                create_poll_groups();
                return;
            }
            case TgtState::CreatePollGroups:
                return;  // waiting for poll_group_step_done
            case TgtState::StartSubsystems:
                // No NVMe-oF subsystems exist until transports and subsystem RPCs arrive.
                set_state(TgtState::Running);
                break;
            case TgtState::Running:
                if (g_tgt.init_done) {
                    FLINT_NOTICELOG("nvmf target running with %zu poll group(s)",
                                    g_tgt.pg_threads.size());
                    std::exchange(g_tgt.init_done, nullptr)(0);
                }
                return;
            case TgtState::FiniStopSubsystems:
                set_state(TgtState::FiniDestroySubsystems);
                break;
            case TgtState::FiniDestroySubsystems:
                set_state(TgtState::FiniDestroyPollGroups);
                destroy_poll_groups();
                return;
            case TgtState::FiniDestroyPollGroups:
                return;  // waiting for poll_group_step_done
            case TgtState::FiniDestroyTarget:
                if (g_tgt.registered) {
                    g_tgt.registered = false;
                    thread::io_device_unregister(&g_tgt, [] {
                        set_state(TgtState::Stopped);
                        advance_state();
                    });
                    return;
                }
                set_state(TgtState::Stopped);
                break;
            case TgtState::Stopped:
                if (g_tgt.fini_done) {
                    std::exchange(g_tgt.fini_done, nullptr)();
                }
                return;
            case TgtState::Error:
                if (g_tgt.init_done) {
                    FLINT_ERRLOG("nvmf target failed to start");
                    std::exchange(g_tgt.init_done, nullptr)(-EIO);
                }
                return;
        }
        if (g_tgt.state == prev) {
            return;
        }
    }
}

void nvmf_init(std::function<void(int)> done) {
    g_tgt.init_done = std::move(done);
    g_tgt.state = TgtState::None;
    advance_state();
}

void nvmf_fini(std::function<void()> done) {
    g_tgt.fini_done = std::move(done);
    set_state(TgtState::FiniStopSubsystems);
    advance_state();
}

}  // namespace

const char *tgt_state_name(TgtState s) {
    switch (s) {
        case TgtState::None:
            return "NONE";
        case TgtState::CreateTarget:
            return "CREATE_TARGET";
        case TgtState::CreatePollGroups:
            return "CREATE_POLL_GROUPS";
        case TgtState::StartSubsystems:
            return "START_SUBSYSTEMS";
        case TgtState::Running:
            return "RUNNING";
        case TgtState::FiniStopSubsystems:
            return "FINI_STOP_SUBSYSTEMS";
        case TgtState::FiniDestroySubsystems:
            return "FINI_DESTROY_SUBSYSTEMS";
        case TgtState::FiniDestroyPollGroups:
            return "FINI_DESTROY_POLL_GROUPS";
        case TgtState::FiniDestroyTarget:
            return "FINI_DESTROY_TARGET";
        case TgtState::Stopped:
            return "STOPPED";
        case TgtState::Error:
            return "ERROR";
    }
    return "UNKNOWN";
}

TgtOptions &tgt_options() {
    static TgtOptions o;
    return o;
}

TgtState tgt_state() {
    return g_tgt.state;
}

void for_each_poll_group(std::function<void(PollGroup &)> fn, std::function<void()> cpl) {
    thread::for_each_channel(
        &g_tgt,
        [fn = std::move(fn)](thread::ChannelIter &it) {
            fn(*static_cast<PollGroup *>(thread::channel_ctx(it.channel())));
            it.next(0);
        },
        [cpl = std::move(cpl)](int) { cpl(); });
}

void register_subsystem() {
    if (event::subsystems().find("nvmf") != nullptr) {
        return;
    }
    event::subsystems().add({
        .name = "nvmf",
        .depends_on = {"bdev"},
        .init = nvmf_init,
        .fini = nvmf_fini,
        .write_config = write_config,
    });
    register_rpcs(event::rpc_registry());
}

}  // namespace flint::nvmf
