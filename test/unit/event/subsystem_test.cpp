#include "flint/event/subsystem.h"

#include <gtest/gtest.h>

#include <functional>

using flint::event::Subsystem;
using flint::event::SubsystemRegistry;

namespace {

std::vector<std::string> names(const SubsystemRegistry &r) {
    std::vector<std::string> out;
    for (const auto &s : r.list()) {
        out.push_back(s.name);
    }
    return out;
}

TEST(Subsystems, ResolveOrdersByDependency) {
    SubsystemRegistry r;
    r.add({.name = "nvmf", .depends_on = {"bdev", "sock"}});
    r.add({.name = "bdev", .depends_on = {"iobuf"}});
    r.add({.name = "sock"});
    r.add({.name = "iobuf"});
    std::string err;
    ASSERT_TRUE(r.resolve(&err)) << err;
    EXPECT_EQ((std::vector<std::string>{"iobuf", "bdev", "sock", "nvmf"}), names(r));
}

TEST(Subsystems, MissingDependencyIsNamed) {
    SubsystemRegistry r;
    r.add({.name = "nvmf", .depends_on = {"bdev"}});
    std::string err;
    EXPECT_FALSE(r.resolve(&err));
    EXPECT_EQ("subsystem 'nvmf' depends on 'bdev', which is not registered", err);
}

TEST(Subsystems, CycleIsNamed) {
    SubsystemRegistry r;
    r.add({.name = "a", .depends_on = {"b"}});
    r.add({.name = "b", .depends_on = {"c"}});
    r.add({.name = "c", .depends_on = {"a"}});
    r.add({.name = "d"});
    std::string err;
    EXPECT_FALSE(r.resolve(&err));
    EXPECT_EQ("subsystem dependency cycle: a -> b -> c -> a", err);
}

TEST(Subsystems, SelfDependencyIsACycle) {
    SubsystemRegistry r;
    r.add({.name = "a", .depends_on = {"a"}});
    std::string err;
    EXPECT_FALSE(r.resolve(&err));
    EXPECT_EQ("subsystem dependency cycle: a -> a", err);
}

TEST(Subsystems, DuplicateThrows) {
    SubsystemRegistry r;
    r.add({.name = "a"});
    EXPECT_THROW(r.add({.name = "a"}), std::logic_error);
}

TEST(Subsystems, AsyncInitInOrderAndFiniInReverse) {
    SubsystemRegistry r;
    std::vector<std::string> log;
    std::function<void(int)> pending;  // completes "b" later, as an async init would
    auto make = [&](const char *n, std::vector<std::string> deps, bool async) {
        Subsystem s;
        s.name = n;
        s.depends_on = std::move(deps);
        s.init = [&, n, async](std::function<void(int)> done) {
            log.push_back(std::string("init ") + n);
            if (async) {
                pending = std::move(done);
            } else {
                done(0);
            }
        };
        s.fini = [&, n](std::function<void()> done) {
            log.push_back(std::string("fini ") + n);
            done();
        };
        return s;
    };
    r.add(make("c", {"b"}, false));
    r.add(make("b", {"a"}, true));
    r.add(make("a", {}, false));
    std::string err;
    ASSERT_TRUE(r.resolve(&err));
    int rc = -1;
    r.init_all([&](int v) { rc = v; });
    EXPECT_EQ(-1, rc);
    EXPECT_EQ((std::vector<std::string>{"init a", "init b"}), log);
    pending(0);
    EXPECT_EQ(0, rc);
    EXPECT_TRUE(r.initialized());
    bool finished = false;
    r.fini_all([&] { finished = true; });
    EXPECT_TRUE(finished);
    EXPECT_EQ(
        (std::vector<std::string>{"init a", "init b", "init c", "fini c", "fini b", "fini a"}),
        log);
}

TEST(Subsystems, FailedInitStopsAndFinisOnlyTheInitialised) {
    SubsystemRegistry r;
    std::vector<std::string> log;
    for (const char *n : {"a", "b", "c"}) {
        Subsystem s;
        s.name = n;
        s.init = [&, n](std::function<void(int)> done) { done(std::string(n) == "b" ? -5 : 0); };
        s.fini = [&, n](std::function<void()> done) {
            log.push_back(n);
            done();
        };
        r.add(s);
    }
    std::string err;
    ASSERT_TRUE(r.resolve(&err));
    int rc = 0;
    testing::internal::CaptureStderr();
    r.init_all([&](int v) { rc = v; });
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(-5, rc);
    EXPECT_NE(std::string::npos, out.find("subsystem 'b' failed to initialise"));
    r.fini_all([] {});
    EXPECT_EQ((std::vector<std::string>{"a"}), log);
}

}  // namespace
