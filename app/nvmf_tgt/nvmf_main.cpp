// nvmf_tgt: the NVMe-oF target daemon.

#include <cstdio>

#include "bdev_aio.h"
#include "bdev_malloc.h"
#include "bdev_null.h"
#include "flint/bdev/bdev.h"
#include "flint/event/app.h"
#include "flint/nvmf/tgt.h"

int main(int argc, char **argv) {
    flint::event::AppOptions opts;
    opts.name = "nvmf_tgt";
    std::string error;
    switch (flint::event::parse_args(argc, argv, &opts, &error)) {
        case flint::event::ParseResult::Help:
            flint::event::print_usage(argv[0]);
            return 0;
        case flint::event::ParseResult::Error:
            std::fprintf(stderr, "%s: %s\n", argv[0], error.c_str());
            flint::event::print_usage(argv[0]);
            return 1;
        case flint::event::ParseResult::Ok:
            break;
    }
    flint::bdev::register_subsystem();
    flint::bdev_malloc::register_module();
    flint::bdev_null::register_module();
    flint::bdev_aio::register_module();
    flint::nvmf::register_subsystem();
    return flint::event::app_start(opts);
}
