#include "flint/event/app.h"

#include <getopt.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "flint/env/env.h"
#include "flint/event/config.h"
#include "flint/event/reactor.h"
#include "flint/event/subsystem.h"
#include "flint/jsonrpc/server.h"
#include "flint/util/log.h"
#include "flint/util/time.h"

FLINT_LOG_FLAG(app);

namespace flint::event {

void framework_rpc_register(jsonrpc::Registry &r);

namespace {

enum class AppState { Startup, Initializing, Running, Stopping };

struct App {
    AppOptions opts;
    AppState state = AppState::Startup;
    thread::Thread *thread = nullptr;
    std::unique_ptr<jsonrpc::Server> rpc;
    thread::Poller *rpc_poller = nullptr;
    thread::Poller *signal_poller = nullptr;
    std::vector<ConfigEntry> deferred;  // runtime entries of the config file
    bool ready = false;
    std::vector<std::function<void()>> ready_waiters;
    int exit_code = 0;
};

App g_app;
std::atomic<int> g_pending_signal{0};
std::atomic<int> g_stop_code{-1};

void on_signal(int sig) {
    g_pending_signal.store(sig, std::memory_order_relaxed);
}

void shutdown();

void fail(const std::string &error) {
    FLINT_ERRLOG("%s", error.c_str());
    g_app.exit_code = 1;
    shutdown();
}

int rpc_poll(void *) {
    return g_app.rpc && g_app.rpc->poll() > 0 ? thread::kBusy : thread::kIdle;
}

int signal_poll(void *) {
    int sig = g_pending_signal.exchange(0, std::memory_order_relaxed);
    if (sig != 0) {
        FLINT_NOTICELOG("received signal %d (%s), shutting down", sig, strsignal(sig));
        shutdown();
        return thread::kBusy;
    }
    int code = g_stop_code.exchange(-1, std::memory_order_relaxed);
    if (code >= 0) {
        g_app.exit_code = code;
        shutdown();
        return thread::kBusy;
    }
    return thread::kIdle;
}

void became_ready() {
    g_app.state = AppState::Running;
    g_app.ready = true;
    FLINT_NOTICELOG("%s ready", g_app.opts.name.c_str());
    auto waiters = std::move(g_app.ready_waiters);
    for (auto &w : waiters) {
        w();
    }
}

void shutdown() {
    if (g_app.state == AppState::Stopping) {
        return;
    }
    bool was_init = g_app.state != AppState::Startup;
    g_app.state = AppState::Stopping;
    // No new requests during teardown.
    thread::poller_unregister(&g_app.rpc_poller);
    g_app.rpc.reset();
    auto finish = [] {
        thread::poller_unregister(&g_app.signal_poller);
        FLINT_DEBUGLOG(app, "subsystems finished; stopping reactors");
        reactors_stop();
    };
    if (was_init) {
        subsystems().fini_all(finish);
    } else {
        finish();
    }
}

void bootstrap() {
    App &a = g_app;
    a.signal_poller = thread::poller_register(signal_poll, nullptr, 10000, "app_signal");
    std::string error;
    std::string resolve_error;
    if (!subsystems().resolve(&resolve_error)) {
        fail("cannot start: " + resolve_error);
        return;
    }
    a.rpc = std::make_unique<jsonrpc::Server>(rpc_registry());
    if (a.rpc->listen(a.opts.rpc_addr, &error) != 0) {
        fail("cannot start the JSON-RPC server: " + error);
        return;
    }
    a.rpc_poller = thread::poller_register(rpc_poll, nullptr, 1000, "rpc_subsystem_poll");
    FLINT_NOTICELOG("JSON-RPC server listening on %s", a.opts.rpc_addr.c_str());

    std::vector<ConfigEntry> entries;
    if (!a.opts.json_config_file.empty() && !load_config_file(a.opts.json_config_file, subsystems(),
                                                              rpc_registry(), &entries, &error)) {
        fail(error);
        return;
    }
    // Startup-phase entries first, as SPDK does; the rest run after subsystem init.
    run_config(std::move(entries), rpc_registry(), true,
               [](const std::string &err, std::vector<ConfigEntry> rest) {
                   if (!err.empty()) {
                       fail(err);
                       return;
                   }
                   g_app.deferred = std::move(rest);
                   if (g_app.opts.wait_for_rpc) {
                       FLINT_NOTICELOG("waiting for framework_start_init RPC");
                       return;
                   }
                   app_start_init([](const std::string &e) {
                       if (!e.empty()) {
                           fail(e);
                       }
                   });
               });
}

}  // namespace

jsonrpc::Registry &rpc_registry() {
    static jsonrpc::Registry r;
    return r;
}
thread::Thread *app_thread() {
    return g_app.thread;
}
const AppOptions &app_options() {
    return g_app.opts;
}
bool app_ready() {
    return g_app.ready;
}
bool app_init_started() {
    return g_app.state != AppState::Startup;
}

void app_on_ready(std::function<void()> cb) {
    if (g_app.ready) {
        cb();
    } else {
        g_app.ready_waiters.push_back(std::move(cb));
    }
}

void app_start_init(std::function<void(const std::string &)> done) {
    if (g_app.state != AppState::Startup) {
        done("subsystems are already initialised or initialising");
        return;
    }
    g_app.state = AppState::Initializing;
    subsystems().init_all([done = std::move(done)](int rc) {
        if (g_app.state == AppState::Stopping) {
            done("the application is shutting down");
            return;
        }
        if (rc != 0) {
            done("subsystem initialisation failed (" + std::to_string(rc) + ")");
            return;
        }
        rpc_registry().set_state(jsonrpc::kRuntime);
        run_config(std::move(g_app.deferred), rpc_registry(), false,
                   [done](const std::string &err, std::vector<ConfigEntry>) {
                       if (!err.empty()) {
                           done(err);
                           return;
                       }
                       became_ready();
                       done("");
                   });
    });
}

void app_stop(int exit_code) {
    g_stop_code.store(exit_code, std::memory_order_relaxed);
}

int app_start(const AppOptions &opts) {
    g_app.opts = opts;
    for (const auto &flag : opts.log_flags) {
        if (!log::set_flag(flag, true)) {
            std::fprintf(stderr, "%s: unknown log flag '%s'\n", opts.name.c_str(), flag.c_str());
            return 1;
        }
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    framework_rpc_register(rpc_registry());
    // The tick rate is measured once (about 20 ms); do it now, not on a reactor mid-run.
    util::tick_hz();

    env::Options eo;
    eo.name = opts.name;
    eo.core_mask = opts.core_mask;
    eo.mem_size_mb = opts.mem_size_mb;
    eo.no_huge = opts.no_huge;
    std::string error;
    int rc = env::init(eo, &error);
    if (rc != 0) {
        FLINT_ERRLOG("cannot initialise the environment: %s", error.c_str());
        return 1;
    }
    rc = reactors_init();
    if (rc != 0) {
        FLINT_ERRLOG("cannot initialise reactors (%d)", rc);
        env::fini();
        return 1;
    }
    util::CpuSet main_mask;
    main_mask.set(env::main_core());
    g_app.thread = thread::create("app_thread", &main_mask);
    if (g_app.thread == nullptr || thread::send_fn(g_app.thread, bootstrap) != 0) {
        FLINT_ERRLOG("cannot create the app thread");
        reactors_fini();
        env::fini();
        return 1;
    }
    reactors_start();
    g_app.thread = nullptr;
    reactors_fini();
    env::fini();
    return g_app.exit_code;
}

void print_usage(const char *prog) {
    std::printf(
        "%s [options]\n"
        "options:\n"
        " -c, --json <config>        JSON config file (SPDK format)\n"
        " -m, --cpumask <mask>       core mask (0x3), list ([0,1]) or range (0-1); default 0x1\n"
        " -r, --rpc-socket <path>    RPC listen address (default %s)\n"
        " -s, --mem-size <size>      memory size in MB for DPDK\n"
        "     --no-huge              run without hugepages (anonymous memory; no DMA to devices)\n"
        "     --wait-for-rpc         wait for RPCs to initialise subsystems\n"
        " -L, --logflag <flag>       enable a log flag (repeatable; 'all' for every flag)\n"
        " -h, --help                 show this usage\n",
        prog, kDefaultRpcSocket);
}

ParseResult parse_args(int argc, char **argv, AppOptions *opts, std::string *error,
                       const AppArgs &app) {
    enum { kWaitForRpc = 256, kNoHuge };
    static const option kLong[] = {
        {"json", required_argument, nullptr, 'c'},
        {"config", required_argument, nullptr, 'c'},
        {"cpumask", required_argument, nullptr, 'm'},
        {"rpc-socket", required_argument, nullptr, 'r'},
        {"mem-size", required_argument, nullptr, 's'},
        {"logflag", required_argument, nullptr, 'L'},
        {"help", no_argument, nullptr, 'h'},
        {"wait-for-rpc", no_argument, nullptr, kWaitForRpc},
        {"no-huge", no_argument, nullptr, kNoHuge},
        {nullptr, 0, nullptr, 0},
    };
    optind = 1;
    opterr = 0;
    int ch;
    const std::string shorts = std::string(":c:m:r:s:L:h") + app.short_opts;
    while ((ch = getopt_long(argc, argv, shorts.c_str(), kLong, nullptr)) != -1) {
        switch (ch) {
            case 'c':
                opts->json_config_file = optarg;
                break;
            case 'm': {
                util::CpuSet s;
                if (!s.parse(optarg, error)) {
                    *error = "invalid -m '" + std::string(optarg) + "': " + *error;
                    return ParseResult::Error;
                }
                opts->core_mask = optarg;
                break;
            }
            case 'r':
                opts->rpc_addr = optarg;
                break;
            case 's': {
                char *end = nullptr;
                errno = 0;
                unsigned long long v = std::strtoull(optarg, &end, 10);
                // SPDK also accepts a size suffix; MB is its unit.
                if (errno != 0 || end == optarg ||
                    (*end != '\0' && std::string(end) != "M" && std::string(end) != "MB") ||
                    v == 0 || v > (1ull << 24)) {
                    *error = "invalid -s '" + std::string(optarg) + "': expected a size in MB";
                    return ParseResult::Error;
                }
                opts->mem_size_mb = v;
                break;
            }
            case 'L':
                opts->log_flags.emplace_back(optarg);
                break;
            case 'h':
                return ParseResult::Help;
            case kWaitForRpc:
                opts->wait_for_rpc = true;
                break;
            case kNoHuge:
                opts->no_huge = true;
                break;
            case ':':
                *error = std::string("option '") + argv[optind - 1] + "' needs an argument";
                return ParseResult::Error;
            default:
                if (ch > 0 && ch < 128 && app.parse && std::strchr(app.short_opts, ch) != nullptr) {
                    if (!app.parse(ch, optarg, error)) {
                        return ParseResult::Error;
                    }
                    break;
                }
                *error = std::string("unknown option '") + argv[optind - 1] + "'";
                return ParseResult::Error;
        }
    }
    if (optind < argc) {
        *error = std::string("unexpected argument '") + argv[optind] + "'";
        return ParseResult::Error;
    }
    return ParseResult::Ok;
}

}  // namespace flint::event
