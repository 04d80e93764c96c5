// Framework JSON-RPC methods: discovery of methods, init control, reactors, threads, logs.

#include <signal.h>
#include <unistd.h>

#include <memory>

#include "flint/event/app.h"
#include "flint/event/reactor.h"
#include "flint/event/subsystem.h"
#include "flint/util/log.h"
#include "flint/util/time.h"
#include "flint/version.h"

namespace flint::event {
namespace {

using jsonrpc::kInvalidParams;
using jsonrpc::kRuntime;
using jsonrpc::kStartup;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

using jsonrpc::u64;

void no_params(const RequestPtr &req) {
    ParamDecoder d(req->params());
    d.finish();
}

void rpc_get_methods(const RequestPtr &req) {
    ParamDecoder d(req->params());
    bool current = d.optional_bool("current").value_or(false);
    bool aliases = d.optional_bool("include_aliases").value_or(false);
    d.finish();
    Json::Value out(Json::arrayValue);
    for (const auto &n : rpc_registry().names(current, aliases)) {
        out.append(n);
    }
    req->result(out);
}

void spdk_get_version(const RequestPtr &req) {
    no_params(req);
    Json::Value v;
    v["version"] = kVersionString;
    v["fields"]["major"] = kVersionMajor;
    v["fields"]["minor"] = kVersionMinor;
    v["fields"]["patch"] = kVersionPatch;
    v["fields"]["suffix"] = "";
    req->result(v);
}

void framework_start_init(const RequestPtr &req) {
    no_params(req);
    if (app_init_started()) {
        // A repeated call must not disturb the init already under way.
        throw jsonrpc::Error(jsonrpc::kInvalidState,
                             "Subsystems have been initialized or are being initialized");
    }
    app_start_init([req](const std::string &error) {
        if (error.empty()) {
            req->result(true);
        } else {
            req->error(jsonrpc::kInternalError, error);
            app_stop(1);
        }
    });
}

void framework_wait_init(const RequestPtr &req) {
    no_params(req);
    app_on_ready([req] { req->result(true); });
}

// Threads report themselves by message so no thread's state is read from another.
struct ThreadSnapshot {
    std::string name;
    uint64_t id;
    std::string cpumask;
    uint32_t lcore;
    thread::ThreadStats stats;
    size_t active, timed, paused;
    std::vector<thread::PollerInfo> pollers[3];
};

void collect_threads(bool with_pollers, std::function<void(std::vector<ThreadSnapshot> &)> done) {
    auto snaps = std::make_shared<std::vector<ThreadSnapshot>>();
    thread::for_each_thread(
        [snaps, with_pollers](thread::Thread *t) {
            ThreadSnapshot s;
            s.name = t->name();
            s.id = t->id();
            s.cpumask = t->cpumask().empty() ? "any" : t->cpumask().to_hex();
            Reactor *r = reactor_of(t);
            s.lcore = r != nullptr ? r->lcore() : UINT32_MAX;
            s.stats = t->stats();
            s.active = t->active_poller_count();
            s.timed = t->timed_poller_count();
            s.paused = t->paused_poller_count();
            if (with_pollers) {
                for (int i = 0; i < 3; ++i) {
                    s.pollers[i] = t->pollers(i);
                }
            }
            snaps->push_back(std::move(s));
        },
        [snaps, done = std::move(done)] { done(*snaps); });
}

void framework_get_reactors(const RequestPtr &req) {
    no_params(req);
    collect_threads(false, [req](std::vector<ThreadSnapshot> &snaps) {
        Json::Value out;
        out["tick_rate"] = u64(util::tick_hz());
        out["pid"] = static_cast<Json::Int64>(getpid());
        Json::Value list(Json::arrayValue);
        for (const auto &r : reactors()) {
            Json::Value j;
            j["lcore"] = r->lcore();
            j["tid"] = r->tid();
            j["busy"] = u64(r->busy_tsc());
            j["idle"] = u64(r->idle_tsc());
            j["in_interrupt"] = false;
            j["irq"] = 0;
            j["sys"] = 0;
            j["usr"] = 0;
            Json::Value threads(Json::arrayValue);
            for (const auto &s : snaps) {
                if (s.lcore == r->lcore()) {
                    Json::Value t;
                    t["name"] = s.name;
                    t["id"] = u64(s.id);
                    t["cpumask"] = s.cpumask;
                    t["elapsed"] = u64(s.stats.busy_tsc + s.stats.idle_tsc);
                    threads.append(t);
                }
            }
            j["lw_threads"] = threads;
            list.append(j);
        }
        out["reactors"] = list;
        req->result(out);
    });
}

void thread_get_stats(const RequestPtr &req) {
    no_params(req);
    collect_threads(false, [req](std::vector<ThreadSnapshot> &snaps) {
        Json::Value out;
        out["tick_rate"] = u64(util::tick_hz());
        Json::Value list(Json::arrayValue);
        for (const auto &s : snaps) {
            Json::Value t;
            t["name"] = s.name;
            t["id"] = u64(s.id);
            t["cpumask"] = s.cpumask;
            t["busy"] = u64(s.stats.busy_tsc);
            t["idle"] = u64(s.stats.idle_tsc);
            t["active_pollers_count"] = u64(s.active);
            t["timed_pollers_count"] = u64(s.timed);
            t["paused_pollers_count"] = u64(s.paused);
            list.append(t);
        }
        out["threads"] = list;
        req->result(out);
    });
}

void thread_get_pollers(const RequestPtr &req) {
    no_params(req);
    collect_threads(true, [req](std::vector<ThreadSnapshot> &snaps) {
        static const char *kKinds[3] = {"active_pollers", "timed_pollers", "paused_pollers"};
        Json::Value out;
        out["tick_rate"] = u64(util::tick_hz());
        Json::Value list(Json::arrayValue);
        for (const auto &s : snaps) {
            Json::Value t;
            t["name"] = s.name;
            t["id"] = u64(s.id);
            for (int i = 0; i < 3; ++i) {
                Json::Value ps(Json::arrayValue);
                for (const auto &p : s.pollers[i]) {
                    Json::Value pj;
                    pj["name"] = p.name;
                    pj["id"] = u64(p.id);
                    pj["state"] = p.state;
                    pj["run_count"] = u64(p.run_count);
                    pj["busy_count"] = u64(p.busy_count);
                    if (p.period_ticks != 0) {
                        pj["period_ticks"] = u64(p.period_ticks);
                    }
                    ps.append(pj);
                }
                t[kKinds[i]] = ps;
            }
            list.append(t);
        }
        out["threads"] = list;
        req->result(out);
    });
}

void framework_get_subsystems(const RequestPtr &req) {
    no_params(req);
    Json::Value out(Json::arrayValue);
    for (const auto &s : subsystems().list()) {
        Json::Value j;
        j["subsystem"] = s.name;
        Json::Value deps(Json::arrayValue);
        for (const auto &d : s.depends_on) {
            deps.append(d);
        }
        j["depends_on"] = deps;
        out.append(j);
    }
    req->result(out);
}

void framework_get_config(const RequestPtr &req) {
    ParamDecoder d(req->params());
    std::string name = d.required_string("name");
    d.finish();
    const Subsystem *s = subsystems().find(name);
    if (s == nullptr) {
        throw jsonrpc::Error(kInvalidParams,
                             "Invalid parameter 'name': no subsystem named '" + name + "'");
    }
    Json::Value config(Json::arrayValue);
    if (s->write_config) {
        s->write_config(config);
    }
    req->result(config);
}

void log_flag(const RequestPtr &req, bool on) {
    ParamDecoder d(req->params());
    std::string flag = d.required_string("flag");
    d.finish();
    if (!log::set_flag(flag, on)) {
        throw jsonrpc::Error(kInvalidParams,
                             "Invalid parameter 'flag': no log flag named '" + flag + "'");
    }
    req->result(true);
}

void log_get_flags(const RequestPtr &req) {
    no_params(req);
    Json::Value out(Json::objectValue);
    for (const auto &[name, on] : log::flags()) {
        out[name] = on;
    }
    req->result(out);
}

void log_set_level(const RequestPtr &req) {
    ParamDecoder d(req->params());
    std::string level = d.required_string("level");
    d.finish();
    auto l = log::parse_level(level);
    if (!l) {
        throw jsonrpc::Error(kInvalidParams,
                             "Invalid parameter 'level': expected one of ERROR, WARNING, "
                             "NOTICE, INFO, DEBUG, DISABLED");
    }
    log::set_level(*l);
    req->result(true);
}

void log_get_level(const RequestPtr &req) {
    no_params(req);
    req->result(log::level_name(log::level()));
}

void spdk_kill_instance(const RequestPtr &req) {
    ParamDecoder d(req->params());
    std::string name = d.required_string("sig_name");
    d.finish();
    static const std::pair<const char *, int> kSignals[] = {
        // Only signals with a defined outcome: orderly shutdown, or an immediate kill.
        {"SIGINT", SIGINT},
        {"SIGTERM", SIGTERM},
        {"SIGKILL", SIGKILL},
    };
    for (const auto &[n, sig] : kSignals) {
        // SPDK also accepts the name without the SIG prefix.
        if (name == n || name == n + 3) {
            req->result(true);
            kill(getpid(), sig);
            return;
        }
    }
    throw jsonrpc::Error(kInvalidParams,
                         "Invalid parameter 'sig_name': unknown signal '" + name + "'");
}

}  // namespace

void framework_rpc_register(jsonrpc::Registry &r) {
    if (r.has("rpc_get_methods")) {
        return;
    }
    const uint32_t both = kStartup | kRuntime;
    r.add("rpc_get_methods", rpc_get_methods, both);
    r.add("spdk_get_version", spdk_get_version, both);
    r.add("framework_start_init", framework_start_init, kStartup);
    r.add("framework_wait_init", framework_wait_init, both);
    r.add("framework_get_reactors", framework_get_reactors, both);
    r.add("framework_get_subsystems", framework_get_subsystems, both);
    r.add("framework_get_config", framework_get_config, kRuntime);
    r.add("thread_get_stats", thread_get_stats, both);
    r.add("thread_get_pollers", thread_get_pollers, both);
    r.add(
        "log_set_flag", [](const RequestPtr &q) { log_flag(q, true); }, both);
    r.add(
        "log_clear_flag", [](const RequestPtr &q) { log_flag(q, false); }, both);
    r.add("log_get_flags", log_get_flags, both);
    r.add("log_set_level", log_set_level, both);
    r.add("log_get_level", log_get_level, both);
    r.add("spdk_kill_instance", spdk_kill_instance, both);
    // Names SPDK used before its framework_* renames.
    r.add_alias("get_rpc_methods", "rpc_get_methods");
    r.add_alias("get_spdk_version", "spdk_get_version");
    r.add_alias("start_subsystem_init", "framework_start_init");
    r.add_alias("wait_subsystem_init", "framework_wait_init");
    r.add_alias("kill_instance", "spdk_kill_instance");
}

}  // namespace flint::event
