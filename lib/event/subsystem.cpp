#include "flint/event/subsystem.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "flint/util/log.h"

FLINT_LOG_FLAG(subsystem);

namespace flint::event {

void SubsystemRegistry::add(Subsystem s) {
    if (find(s.name) != nullptr) {
        throw std::logic_error("subsystem '" + s.name + "' registered twice");
    }
    subsystems_.push_back(std::move(s));
    resolved_ = false;
}

const Subsystem *SubsystemRegistry::find(const std::string &name) const {
    for (const auto &s : subsystems_) {
        if (s.name == name) {
            return &s;
        }
    }
    return nullptr;
}

bool SubsystemRegistry::resolve(std::string *error) {
    std::map<std::string, const Subsystem *> by_name;
    for (const auto &s : subsystems_) {
        by_name[s.name] = &s;
    }
    for (const auto &s : subsystems_) {
        for (const auto &d : s.depends_on) {
            if (by_name.count(d) == 0) {
                *error =
                    "subsystem '" + s.name + "' depends on '" + d + "', which is not registered";
                return false;
            }
        }
    }
    enum class Mark { None, Visiting, Done };
    std::map<std::string, Mark> mark;
    std::vector<std::string> path;
    std::vector<Subsystem> sorted;
    std::function<bool(const Subsystem &)> visit = [&](const Subsystem &s) {
        Mark &m = mark[s.name];
        if (m == Mark::Done) {
            return true;
        }
        path.push_back(s.name);
        if (m == Mark::Visiting) {
            auto first = std::find(path.begin(), path.end(), s.name);
            std::string cycle;
            for (auto it = first; it != path.end(); ++it) {
                cycle += (cycle.empty() ? "" : " -> ") + *it;
            }
            *error = "subsystem dependency cycle: " + cycle;
            return false;
        }
        m = Mark::Visiting;
        for (const auto &d : s.depends_on) {
            if (!visit(*by_name[d])) {
                return false;
            }
        }
        mark[s.name] = Mark::Done;
        path.pop_back();
        sorted.push_back(s);
        return true;
    };
    for (const auto &s : subsystems_) {
        if (!visit(s)) {
            return false;
        }
    }
    subsystems_ = std::move(sorted);
    resolved_ = true;
    return true;
}

void SubsystemRegistry::init_all(std::function<void(int)> done) {
    if (!resolved_) {
        FLINT_ERRLOG("subsystems initialised before their order was resolved");
        done(-EINVAL);
        return;
    }
    initialized_count_ = 0;
    init_next(std::move(done));
}

void SubsystemRegistry::init_next(std::function<void(int)> done) {
    if (initialized_count_ == subsystems_.size()) {
        done(0);
        return;
    }
    const Subsystem &s = subsystems_[initialized_count_];
    FLINT_DEBUGLOG(subsystem, "initialising subsystem '%s'", s.name.c_str());
    auto next = [this, done = std::move(done), name = s.name](int rc) mutable {
        if (rc != 0) {
            FLINT_ERRLOG("subsystem '%s' failed to initialise (%d)", name.c_str(), rc);
            done(rc);
            return;
        }
        ++initialized_count_;
        init_next(std::move(done));
    };
    if (s.init) {
        s.init(std::move(next));
    } else {
        next(0);
    }
}

void SubsystemRegistry::fini_all(std::function<void()> done) {
    fini_next(std::move(done));
}

void SubsystemRegistry::fini_next(std::function<void()> done) {
    if (initialized_count_ == 0) {
        done();
        return;
    }
    const Subsystem &s = subsystems_[--initialized_count_];
    FLINT_DEBUGLOG(subsystem, "finishing subsystem '%s'", s.name.c_str());
    if (s.fini) {
        s.fini([this, done = std::move(done)]() mutable { fini_next(std::move(done)); });
    } else {
        fini_next(std::move(done));
    }
}

SubsystemRegistry &subsystems() {
    static SubsystemRegistry r;
    return r;
}

}  // namespace flint::event
