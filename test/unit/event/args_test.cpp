#include <gtest/gtest.h>

#include <vector>

#include "flint/event/app.h"

using namespace flint::event;

namespace {

ParseResult parse(std::vector<const char *> args, AppOptions *o, std::string *err) {
    args.insert(args.begin(), "nvmf_tgt");
    return parse_args(static_cast<int>(args.size()), const_cast<char **>(args.data()), o, err);
}

TEST(Args, SpdkOptions) {
    AppOptions o;
    std::string err;
    ASSERT_EQ(ParseResult::Ok,
              parse({"-m", "[0,1]", "-c", "cfg.json", "-r", "/tmp/x.sock", "--wait-for-rpc", "-s",
                     "512", "--no-huge", "-L", "nvmf", "-L", "thread"},
                    &o, &err))
        << err;
    EXPECT_EQ("[0,1]", o.core_mask);
    EXPECT_EQ("cfg.json", o.json_config_file);
    EXPECT_EQ("/tmp/x.sock", o.rpc_addr);
    EXPECT_TRUE(o.wait_for_rpc);
    EXPECT_EQ(512u, o.mem_size_mb);
    EXPECT_TRUE(o.no_huge);
    EXPECT_EQ((std::vector<std::string>{"nvmf", "thread"}), o.log_flags);
    AppOptions d;
    ASSERT_EQ(ParseResult::Ok, parse({"--json", "a.json", "--cpumask", "0-1"}, &d, &err));
    EXPECT_EQ("a.json", d.json_config_file);
    EXPECT_EQ(kDefaultRpcSocket, d.rpc_addr);
}

TEST(Args, Errors) {
    struct Case {
        std::vector<const char *> args;
        const char *error;
    } cases[] = {
        {{"-m", "0xZ"}, "invalid -m '0xZ': invalid hex digit 'z' in core mask"},
        {{"-s", "lots"}, "invalid -s 'lots': expected a size in MB"},
        {{"-s", "0"}, "invalid -s '0': expected a size in MB"},
        {{"--bogus"}, "unknown option '--bogus'"},
        {{"-c"}, "option '-c' needs an argument"},
        {{"extra"}, "unexpected argument 'extra'"},
    };
    for (const auto &c : cases) {
        AppOptions o;
        std::string err;
        EXPECT_EQ(ParseResult::Error, parse(c.args, &o, &err)) << c.error;
        EXPECT_EQ(c.error, err);
    }
    AppOptions o;
    std::string err;
    EXPECT_EQ(ParseResult::Help, parse({"-h"}, &o, &err));
}

TEST(Args, AppOptionsRideOnTheFrameworkParser) {
    AppOptions o;
    std::string err;
    int q = 0;
    bool flag = false;
    AppArgs app;
    app.short_opts = "q:z";
    app.parse = [&](int ch, const char *arg, std::string *e) {
        if (ch == 'z') {
            flag = true;
            return true;
        }
        if (std::string(arg) == "bad") {
            *e = "invalid -q 'bad'";
            return false;
        }
        q = std::stoi(arg);
        return true;
    };
    std::vector<const char *> args{"bdevperf", "-q", "128", "-m", "0x1", "-z"};
    ASSERT_EQ(ParseResult::Ok, parse_args(static_cast<int>(args.size()),
                                          const_cast<char **>(args.data()), &o, &err, app))
        << err;
    EXPECT_EQ(128, q);
    EXPECT_TRUE(flag);
    EXPECT_EQ("0x1", o.core_mask);
    std::vector<const char *> bad{"bdevperf", "-q", "bad"};
    EXPECT_EQ(ParseResult::Error, parse_args(static_cast<int>(bad.size()),
                                             const_cast<char **>(bad.data()), &o, &err, app));
    EXPECT_EQ("invalid -q 'bad'", err);
    std::vector<const char *> missing{"bdevperf", "-q"};
    EXPECT_EQ(ParseResult::Error, parse_args(static_cast<int>(missing.size()),
                                             const_cast<char **>(missing.data()), &o, &err, app));
    EXPECT_EQ("option '-q' needs an argument", err);
    std::vector<const char *> other{"nvmf_tgt", "-q", "1"};  // not an option of this app
    EXPECT_EQ(ParseResult::Error, parse_args(static_cast<int>(other.size()),
                                             const_cast<char **>(other.data()), &o, &err));
}

}  // namespace
