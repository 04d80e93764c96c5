#pragma once
// The application framework: SPDK-style options, env and reactors, the app thread, the
// JSON-RPC server, subsystem init from a JSON config, and orderly shutdown on signals.

#include <functional>
#include <string>
#include <vector>

#include "flint/jsonrpc/jsonrpc.h"
#include "flint/thread/thread.h"

namespace flint::event {

inline constexpr const char *kDefaultRpcSocket = "/var/tmp/spdk.sock";

struct AppOptions {
    std::string name = "flint";
    std::string core_mask = "0x1";
    std::string json_config_file;
    std::string rpc_addr = kDefaultRpcSocket;
    bool wait_for_rpc = false;
    size_t mem_size_mb = 0;
    bool no_huge = false;
    std::vector<std::string> log_flags;
};

enum class ParseResult { Ok, Help, Error };
// Parses SPDK's options: -m/--cpumask, -c/--json, -r/--rpc-socket, --wait-for-rpc,
// -s/--mem-size, --no-huge, -L/--logflag, -h/--help. Help text goes to stdout; errors set *error.
// An app's own short options (getopt syntax, e.g. "q:o:w:"), handed to `parse` with their
// argument (nullptr for a flag). parse returns false with *error set to refuse a value.
struct AppArgs {
    const char *short_opts = "";
    std::function<bool(int opt, const char *arg, std::string *error)> parse;
};
ParseResult parse_args(int argc, char **argv, AppOptions *opts, std::string *error,
                       const AppArgs &app = {});
void print_usage(const char *prog);

// Runs the application until shutdown; returns the process exit code.
int app_start(const AppOptions &opts);
// Starts an orderly shutdown with the given exit code. Safe from any thread.
void app_stop(int exit_code);

// The application's method registry; modules add their methods before app_start().
jsonrpc::Registry &rpc_registry();
thread::Thread *app_thread();
const AppOptions &app_options();
// True once subsystems are initialised and the config's runtime entries ran.
bool app_ready();
// Runs cb (on the app thread) once the app is ready; at once if it already is.
void app_on_ready(std::function<void()> cb);
// True once subsystem init has begun (framework_start_init or automatic start).
bool app_init_started();
// framework_start_init: initialises subsystems and runs the config's runtime entries;
// done(empty) on success, or the error.
void app_start_init(std::function<void(const std::string &error)> done);

}  // namespace flint::event
