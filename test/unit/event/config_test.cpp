#include "flint/event/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

using namespace flint;
using event::ConfigEntry;

namespace {

class ConfigTest : public ::testing::Test {
protected:
    void SetUp() override {
        subs_.add({.name = "bdev"});
        subs_.add({.name = "nvmf", .depends_on = {"bdev"}});
        std::string err;
        ASSERT_TRUE(subs_.resolve(&err));
        auto record = [this](const jsonrpc::RequestPtr &r) {
            calls_.push_back(r->method());
            jsonrpc::ParamDecoder d(r->params());
            auto v = d.optional_int("value", 0, 10);
            d.finish();
            r->result(true);
        };
        methods_.add("startup_method", record, jsonrpc::kStartup);
        methods_.add("runtime_method", record, jsonrpc::kRuntime);
        methods_.add("any_method", record, jsonrpc::kStartup | jsonrpc::kRuntime);
    }
    bool parse(const std::string &text, std::string *err) {
        Json::Value root;
        Json::Reader reader;
        EXPECT_TRUE(reader.parse(text, root)) << text;
        return event::parse_config(root, subs_, methods_, &entries_, err);
    }
    event::SubsystemRegistry subs_;
    jsonrpc::Registry methods_;
    std::vector<ConfigEntry> entries_;
    std::vector<std::string> calls_;
};

TEST_F(ConfigTest, EntriesFollowInitOrderThenFileOrder) {
    std::string err;
    ASSERT_TRUE(parse(R"({"subsystems":[
        {"subsystem":"nvmf","config":[{"method":"runtime_method"},{"method":"startup_method"}]},
        {"subsystem":"bdev","config":[{"method":"any_method","params":{"value":1}}]}]})",
                      &err))
        << err;
    ASSERT_EQ(3u, entries_.size());
    EXPECT_EQ("bdev", entries_[0].subsystem);
    EXPECT_EQ("any_method", entries_[0].method);
    EXPECT_EQ("runtime_method", entries_[1].method);
    EXPECT_EQ(0u, entries_[1].index);
    EXPECT_EQ("startup_method", entries_[2].method);
    EXPECT_EQ(1u, entries_[2].index);
}

TEST_F(ConfigTest, NullConfigIsAccepted) {
    std::string err;
    EXPECT_TRUE(parse(R"({"subsystems":[{"subsystem":"bdev","config":null}]})", &err)) << err;
    EXPECT_TRUE(entries_.empty());
}

TEST_F(ConfigTest, ErrorsNameWhatIsWrong) {
    struct Case {
        const char *text;
        const char *error;
    } cases[] = {
        {R"([])", "config: the top level must be an object"},
        {R"({"subsystems":{}})", "config: 'subsystems' must be an array"},
        {R"({"subsystems":[], "extra":1})", "config: unknown top-level key 'extra'"},
        {R"({"subsystems":[{"subsystem":"vhost","config":[]}]})",
         "config: subsystems[0]: unknown subsystem 'vhost'"},
        {R"({"subsystems":[{"config":[]}]})",
         "config: subsystems[0]: must be an object with a string 'subsystem'"},
        {R"({"subsystems":[{"subsystem":"bdev","config":{}}]})",
         "config: subsystems[0]: 'config' of subsystem 'bdev' must be an array or null"},
        {R"({"subsystems":[{"subsystem":"bdev"},{"subsystem":"bdev"}]})",
         "config: subsystems[1]: subsystem 'bdev' appears twice"},
        {R"({"subsystems":[{"subsystem":"nvmf","config":[{"method":"any_method"},{"method":"nope"}]}]})",
         "config: subsystem 'nvmf' entry 1 (method 'nope'): unknown method"},
        {R"({"subsystems":[{"subsystem":"nvmf","config":[{"params":{}}]}]})",
         "config: subsystem 'nvmf' entry 0: must be an object with a string 'method'"},
        {R"({"subsystems":[{"subsystem":"nvmf","config":[{"method":"any_method","params":[1]}]}]})",
         "config: subsystem 'nvmf' entry 0 (method 'any_method'): 'params' must be an object"},
    };
    for (const auto &c : cases) {
        std::string err;
        EXPECT_FALSE(parse(c.text, &err)) << c.text;
        EXPECT_EQ(c.error, err) << c.text;
    }
}

TEST_F(ConfigTest, FileErrors) {
    std::string err;
    EXPECT_FALSE(
        event::load_config_file("/nonexistent/flint.json", subs_, methods_, &entries_, &err));
    EXPECT_EQ("config: cannot read '/nonexistent/flint.json': No such file or directory", err);
    char path[] = "/tmp/flint_config_testXXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    std::ofstream(path) << "{\"subsystems\": [ {\"subsystem\": \"bdev\", }";
    EXPECT_FALSE(event::load_config_file(path, subs_, methods_, &entries_, &err));
    EXPECT_EQ(0u, err.find(std::string("config: '") + path + "' is not valid JSON: * Line 1"))
        << err;
    std::ofstream(path)
        << R"({"subsystems":[{"subsystem":"bdev","config":[{"method":"any_method"}]}]})";
    EXPECT_TRUE(event::load_config_file(path, subs_, methods_, &entries_, &err)) << err;
    std::remove(path);
}

TEST_F(ConfigTest, StartupPhaseDefersRuntimeEntries) {
    std::string err;
    ASSERT_TRUE(parse(R"({"subsystems":[{"subsystem":"bdev","config":[
        {"method":"runtime_method"},{"method":"startup_method"},{"method":"any_method"}]}]})",
                      &err));
    std::string result = "unset";
    std::vector<ConfigEntry> rest;
    event::run_config(entries_, methods_, true, [&](const std::string &e, auto r) {
        result = e;
        rest = std::move(r);
    });
    EXPECT_EQ("", result);
    EXPECT_EQ((std::vector<std::string>{"startup_method", "any_method"}), calls_);
    ASSERT_EQ(1u, rest.size());
    EXPECT_EQ("runtime_method", rest[0].method);
    methods_.set_state(jsonrpc::kRuntime);
    event::run_config(rest, methods_, false, [&](const std::string &e, auto) { result = e; });
    EXPECT_EQ("", result);
    EXPECT_EQ("runtime_method", calls_.back());
}

TEST_F(ConfigTest, BadParamStopsTheRunAndNamesTheEntry) {
    std::string err;
    ASSERT_TRUE(parse(R"({"subsystems":[{"subsystem":"nvmf","config":[
        {"method":"any_method","params":{"value":1}},
        {"method":"any_method","params":{"value":"x"}},
        {"method":"any_method"}]}]})",
                      &err));
    std::string result;
    event::run_config(entries_, methods_, true, [&](const std::string &e, auto) { result = e; });
    EXPECT_EQ(2u, calls_.size());  // the third never ran
    EXPECT_EQ(0u, result.find("config: subsystem 'nvmf' entry 1 (method 'any_method'): "))
        << result;
    EXPECT_NE(std::string::npos, result.find("'value'")) << result;
}

TEST_F(ConfigTest, RuntimeOnlyMethodAtStartupFailsInRuntimePhaseCheck) {
    std::string err;
    ASSERT_TRUE(parse(R"({"subsystems":[{"subsystem":"nvmf","config":[
        {"method":"startup_method"}]}]})",
                      &err));
    methods_.set_state(jsonrpc::kRuntime);
    std::string result;
    event::run_config(entries_, methods_, false, [&](const std::string &e, auto) { result = e; });
    EXPECT_EQ(0u, result.find("config: subsystem 'nvmf' entry 0 (method 'startup_method'): "
                              "Method may only be called before"))
        << result;
}

TEST_F(ConfigTest, LongConfigDoesNotRecurse) {
    Json::Value root;
    Json::Value cfg(Json::arrayValue);
    for (int i = 0; i < 200000; ++i) {
        Json::Value e;
        e["method"] = "any_method";
        cfg.append(e);
    }
    root["subsystems"][0]["subsystem"] = "bdev";
    root["subsystems"][0]["config"] = cfg;
    std::string err;
    ASSERT_TRUE(event::parse_config(root, subs_, methods_, &entries_, &err)) << err;
    std::string result = "unset";
    event::run_config(entries_, methods_, true, [&](const std::string &e, auto) { result = e; });
    EXPECT_EQ("", result);
    EXPECT_EQ(200000u, calls_.size());
}

}  // namespace
