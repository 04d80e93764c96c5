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

}  // namespace
