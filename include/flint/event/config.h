#pragma once
// SPDK-format JSON configuration:
//   {"subsystems":[{"subsystem":"nvmf","config":[{"method":"...","params":{...}}]}]}

#include <json/json.h>

#include <functional>
#include <string>
#include <vector>

#include "flint/event/subsystem.h"
#include "flint/jsonrpc/jsonrpc.h"

namespace flint::event {

struct ConfigEntry {
    std::string subsystem;
    size_t index;  // position within its subsystem's "config" array
    std::string method;
    Json::Value params;  // null when absent
};

// Checks a parsed config against the registered subsystems and methods. On success *out
// holds the entries in subsystem init order, each subsystem's entries in file order.
// On failure *error names the subsystem, entry index and method at fault.
bool parse_config(const Json::Value &root, const SubsystemRegistry &subsystems,
                  const jsonrpc::Registry &methods, std::vector<ConfigEntry> *out,
                  std::string *error);
// Reads a file and parses it as above; *error also covers unreadable files and bad JSON.
bool load_config_file(const std::string &path, const SubsystemRegistry &subsystems,
                      const jsonrpc::Registry &methods, std::vector<ConfigEntry> *out,
                      std::string *error);

// Runs entries one after another through methods.dispatch(). With startup_only, entries whose
// method may not run in the startup state are skipped and returned in `rest`. Calls done
// with an empty error on success, or the first failure's message naming the entry.
void run_config(std::vector<ConfigEntry> entries, jsonrpc::Registry &methods, bool startup_only,
                std::function<void(const std::string &error, std::vector<ConfigEntry> rest)> done);

}  // namespace flint::event
