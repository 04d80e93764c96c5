#pragma once
// Subsystems: named parts of the application that init in dependency order (asynchronously)
// and fini in reverse. All calls run on the app thread.

#include <json/json.h>

#include <functional>
#include <string>
#include <vector>

namespace flint::event {

struct Subsystem {
    std::string name;
    std::vector<std::string> depends_on;
    // Starts init; calls done(0) or done(-errno) when finished (now or later).
    std::function<void(std::function<void(int)> done)> init;
    // Starts fini; calls done() when finished. Only called for subsystems whose init succeeded.
    std::function<void(std::function<void()> done)> fini;
    // Appends {"method":..., "params":...} entries that rebuild this subsystem's state.
    std::function<void(Json::Value &config)> write_config;
};

class SubsystemRegistry {
public:
    // Throws std::logic_error on a duplicate name.
    void add(Subsystem s);
    // Sorts subsystems so each follows its dependencies (registration order otherwise).
    // Returns false with *error naming a missing dependency or the members of a cycle.
    bool resolve(std::string *error);
    // In init order once resolve() succeeded, registration order before.
    const std::vector<Subsystem> &list() const { return subsystems_; }
    const Subsystem *find(const std::string &name) const;

    // Inits every subsystem in order; done(rc) after the last or the first failure (whose
    // name is logged). resolve() must have succeeded.
    void init_all(std::function<void(int)> done);
    // Finis the initialised subsystems in reverse order.
    void fini_all(std::function<void()> done);
    bool initialized() const {
        return initialized_count_ == subsystems_.size() && !subsystems_.empty();
    }

private:
    void init_next(std::function<void(int)> done);
    void fini_next(std::function<void()> done);
    std::vector<Subsystem> subsystems_;
    size_t initialized_count_ = 0;
    bool resolved_ = false;
};

// The application's registry; modules add themselves before the app starts.
SubsystemRegistry &subsystems();

}  // namespace flint::event
