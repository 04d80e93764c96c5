#include "flint/event/config.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

namespace flint::event {
namespace {

std::string where(const std::string &subsystem, size_t index, const std::string &method) {
    std::string s = "config: subsystem '" + subsystem + "' entry " + std::to_string(index);
    if (!method.empty()) {
        s += " (method '" + method + "')";
    }
    return s + ": ";
}

}  // namespace

bool parse_config(const Json::Value &root, const SubsystemRegistry &subsystems,
                  const jsonrpc::Registry &methods, std::vector<ConfigEntry> *out,
                  std::string *error) {
    if (!root.isObject()) {
        *error = "config: the top level must be an object";
        return false;
    }
    for (const auto &key : root.getMemberNames()) {
        if (key != "subsystems") {
            *error = "config: unknown top-level key '" + key + "'";
            return false;
        }
    }
    const Json::Value &list = root["subsystems"];
    if (!list.isArray()) {
        *error = "config: 'subsystems' must be an array";
        return false;
    }
    std::map<std::string, std::vector<ConfigEntry>> by_subsystem;
    for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
        const Json::Value &sub = list[i];
        std::string at = "config: subsystems[" + std::to_string(i) + "]: ";
        if (!sub.isObject() || !sub["subsystem"].isString()) {
            *error = at + "must be an object with a string 'subsystem'";
            return false;
        }
        std::string name = sub["subsystem"].asString();
        if (subsystems.find(name) == nullptr) {
            *error = at + "unknown subsystem '" + name + "'";
            return false;
        }
        if (by_subsystem.count(name) != 0) {
            *error = at + "subsystem '" + name + "' appears twice";
            return false;
        }
        for (const auto &key : sub.getMemberNames()) {
            if (key != "subsystem" && key != "config") {
                *error = at + "unknown key '" + key + "'";
                return false;
            }
        }
        auto &entries = by_subsystem[name];
        const Json::Value &config = sub["config"];
        if (config.isNull()) {
            continue;  // SPDK writes null for a subsystem with nothing to configure
        }
        if (!config.isArray()) {
            *error = at + "'config' of subsystem '" + name + "' must be an array or null";
            return false;
        }
        for (Json::ArrayIndex j = 0; j < config.size(); ++j) {
            const Json::Value &e = config[j];
            if (!e.isObject() || !e["method"].isString()) {
                *error = where(name, j, "") + "must be an object with a string 'method'";
                return false;
            }
            std::string method = e["method"].asString();
            for (const auto &key : e.getMemberNames()) {
                if (key != "method" && key != "params") {
                    *error = where(name, j, method) + "unknown key '" + key + "'";
                    return false;
                }
            }
            if (!methods.has(method)) {
                *error = where(name, j, method) + "unknown method";
                return false;
            }
            const Json::Value &params = e["params"];
            if (!params.isNull() && !params.isObject()) {
                *error = where(name, j, method) + "'params' must be an object";
                return false;
            }
            entries.push_back({name, j, method, params});
        }
    }
    out->clear();
    for (const auto &s : subsystems.list()) {
        auto it = by_subsystem.find(s.name);
        if (it != by_subsystem.end()) {
            out->insert(out->end(), it->second.begin(), it->second.end());
        }
    }
    return true;
}

bool load_config_file(const std::string &path, const SubsystemRegistry &subsystems,
                      const jsonrpc::Registry &methods, std::vector<ConfigEntry> *out,
                      std::string *error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        *error = "config: cannot read '" + path + "': " + std::strerror(errno);
        return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    Json::CharReaderBuilder builder;
    Json::CharReaderBuilder::strictMode(&builder.settings_);
    builder.settings_["stackLimit"] = 128;
    std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
    Json::Value root;
    std::string errs;
    if (!reader->parse(text.data(), text.data() + text.size(), &root, &errs)) {
        while (!errs.empty() && (errs.back() == '\n' || errs.back() == ' ')) {
            errs.pop_back();
        }
        *error = "config: '" + path + "' is not valid JSON: " + errs;
        return false;
    }
    return parse_config(root, subsystems, methods, out, error);
}

namespace {

struct ConfigRun {
    std::vector<ConfigEntry> entries;
    size_t next = 0;
    jsonrpc::Registry *methods;
    bool startup_only;
    std::vector<ConfigEntry> rest;
    std::function<void(const std::string &, std::vector<ConfigEntry>)> done;
    // A method that answers inside dispatch() continues the loop instead of recursing.
    bool in_dispatch = false;
    bool answered = false;
    bool failed = false;
};

void run_next(const std::shared_ptr<ConfigRun> &run) {
    while (run->next < run->entries.size()) {
        ConfigEntry &e = run->entries[run->next++];
        if (run->startup_only && (run->methods->states_of(e.method) & jsonrpc::kStartup) == 0) {
            run->rest.push_back(e);
            continue;
        }
        std::string prefix = where(e.subsystem, e.index, e.method);
        auto req = std::make_shared<jsonrpc::Request>(
            e.method, e.params, Json::Value(static_cast<Json::UInt64>(run->next)),
            [run, prefix](const Json::Value &response) {
                if (response.isMember("error")) {
                    run->failed = true;
                    run->done(prefix + response["error"]["message"].asString(), {});
                } else if (run->in_dispatch) {
                    run->answered = true;
                } else {
                    run_next(run);
                }
            });
        run->in_dispatch = true;
        run->answered = false;
        run->methods->dispatch(req);
        req.reset();
        run->in_dispatch = false;
        if (run->failed || !run->answered) {
            return;  // failed, or the completion will continue the run later
        }
    }
    run->done("", std::move(run->rest));
}

}  // namespace

void run_config(std::vector<ConfigEntry> entries, jsonrpc::Registry &methods, bool startup_only,
                std::function<void(const std::string &, std::vector<ConfigEntry>)> done) {
    auto run = std::make_shared<ConfigRun>();
    run->entries = std::move(entries);
    run->methods = &methods;
    run->startup_only = startup_only;
    run->done = std::move(done);
    run_next(run);
}

}  // namespace flint::event
