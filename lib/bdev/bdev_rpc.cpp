// The "bdev" subsystem and the generic bdev RPCs.

#include <cerrno>
#include <memory>

#include "bdev_internal.h"
#include "flint/event/app.h"
#include "flint/event/iobuf.h"
#include "flint/event/subsystem.h"
#include "flint/util/log.h"
#include "flint/util/time.h"

namespace flint::bdev {
namespace {

using jsonrpc::kInvalidParams;
using jsonrpc::ParamDecoder;
using jsonrpc::RequestPtr;

using jsonrpc::u64;

Json::Value describe(Bdev *b) {
    Json::Value j;
    j["name"] = b->name;
    j["aliases"] = Json::Value(Json::arrayValue);
    for (const auto &a : b->aliases) {
        j["aliases"].append(a);
    }
    j["product_name"] = b->product_name;
    j["block_size"] = b->block_size;
    j["num_blocks"] = u64(b->state->num_blocks.load());
    j["uuid"] = b->uuid;
    qos_limits_json(b, j["assigned_rate_limits"]);  // 0: that limit is off
    std::string owner = claimed_by(b);
    j["claimed"] = !owner.empty();
    if (!owner.empty()) {
        j["claim_type"] = "exclusive_write";
    }
    j["zoned"] = false;
    if (b->optimal_io_boundary != 0) {
        j["optimal_io_boundary"] = b->optimal_io_boundary;
    }
    Json::Value types;
    for (int i = 0; i < kNumIoTypes; ++i) {
        auto t = static_cast<IoType>(i);
        bool native = b->ops->supports(t);
        // Write zeroes is emulated with writes of zeroes when the module lacks it.
        if (t == IoType::WriteZeroes && !native) {
            native = b->ops->supports(IoType::Write);
        }
        j["supported_io_types"][io_type_name(t)] = native;
    }
    j["supported_io_types"]["nvme_admin"] = false;
    j["supported_io_types"]["nvme_io"] = false;
    Json::Value ds(Json::objectValue);
    b->ops->dump_info(ds);
    j["driver_specific"] = ds;
    return j;
}

struct WaitForBdev {
    std::string name;
    uint64_t deadline;
    RequestPtr req;
    thread::Poller *poller = nullptr;
};

int wait_for_bdev_poll(void *arg) {
    auto *w = static_cast<WaitForBdev *>(arg);
    Bdev *b = get_bdev(w->name);
    if (b == nullptr && util::ticks() < w->deadline) {
        return thread::kIdle;
    }
    Json::Value out(Json::arrayValue);
    if (b != nullptr) {
        out.append(describe(b));
        w->req->result(out);
    } else {
        w->req->error(-ENODEV, "No such device");
    }
    thread::poller_unregister(&w->poller);
    delete w;
    return thread::kBusy;
}

void bdev_get_bdevs(const RequestPtr &req) {
    ParamDecoder d(req->params());
    auto name = d.optional_string("name");
    auto timeout = d.optional_uint("timeout", 3600u * 1000);
    d.finish();
    Json::Value out(Json::arrayValue);
    if (!name) {
        for (Bdev *b : bdevs()) {
            if (!b->state->removing.load()) {
                out.append(describe(b));
            }
        }
        req->result(out);
        return;
    }
    Bdev *b = get_bdev(*name);
    if (b != nullptr) {
        out.append(describe(b));
        req->result(out);
        return;
    }
    if (timeout.value_or(0) == 0) {
        throw jsonrpc::Error(-ENODEV, "No such device");
    }
    auto *w = new WaitForBdev{*name, util::ticks() + util::us_to_ticks(*timeout * 1000), req};
    w->poller = thread::poller_register(wait_for_bdev_poll, w, 1000, "bdev_get_bdevs_wait");
}

Json::Value iostat_json(Bdev *b, const IoStats &s) {
    Json::Value j;
    j["name"] = b->name;
    j["bytes_read"] = u64(s.bytes_read);
    j["num_read_ops"] = u64(s.num_read_ops);
    j["bytes_written"] = u64(s.bytes_written);
    j["num_write_ops"] = u64(s.num_write_ops);
    j["bytes_unmapped"] = u64(s.bytes_unmapped);
    j["num_unmap_ops"] = u64(s.num_unmap_ops);
    j["bytes_copied"] = u64(s.bytes_copied);
    j["num_copy_ops"] = u64(s.num_copy_ops);
    j["read_latency_ticks"] = u64(s.read_latency_ticks);
    j["max_read_latency_ticks"] = u64(s.max_read_latency_ticks);
    j["min_read_latency_ticks"] = u64(s.num_read_ops ? s.min_read_latency_ticks : 0);
    j["write_latency_ticks"] = u64(s.write_latency_ticks);
    j["max_write_latency_ticks"] = u64(s.max_write_latency_ticks);
    j["min_write_latency_ticks"] = u64(s.num_write_ops ? s.min_write_latency_ticks : 0);
    j["unmap_latency_ticks"] = u64(s.unmap_latency_ticks);
    j["num_other_ops"] = u64(s.num_other_ops);
    j["io_error"] = u64(s.io_errors);
    return j;
}

// SPDK's per_channel form: one bdev, one entry per channel.
void per_channel_iostat(const RequestPtr &req, Bdev *b) {
    get_channel_iostats(b, [req, b](const std::vector<ChannelStats> &chans) {
        Json::Value out;
        out["tick_rate"] = u64(util::tick_hz());
        out["ticks"] = u64(util::ticks());
        out["name"] = b->name;
        out["channels"] = Json::Value(Json::arrayValue);
        for (const auto &c : chans) {
            Json::Value j = iostat_json(b, c.stats);
            j.removeMember("name");
            j["thread_id"] = u64(c.thread_id);
            j["thread_name"] = c.thread_name;
            out["channels"].append(j);
        }
        req->result(out);
    });
}

void bdev_get_iostat(const RequestPtr &req) {
    ParamDecoder d(req->params());
    auto name = d.optional_string("name");
    bool per_channel = d.optional_bool("per_channel").value_or(false);
    d.finish();
    if (per_channel) {
        if (!name) {
            throw jsonrpc::Error(kInvalidParams,
                                 "Invalid parameter 'per_channel': needs 'name' (one bdev)");
        }
        Bdev *b = get_bdev(*name);
        if (b == nullptr) {
            throw jsonrpc::Error(-ENODEV, "No such device");
        }
        per_channel_iostat(req, b);
        return;
    }
    std::vector<Bdev *> list;
    if (name) {
        Bdev *b = get_bdev(*name);
        if (b == nullptr) {
            throw jsonrpc::Error(-ENODEV, "No such device");
        }
        list.push_back(b);
    } else {
        for (Bdev *b : bdevs()) {
            if (!b->state->removing.load()) {
                list.push_back(b);
            }
        }
    }
    // One bdev at a time: each sum walks that bdev's channels.
    struct Walk {
        std::vector<Bdev *> list;
        size_t next = 0;
        Json::Value out;
        RequestPtr req;
    };
    auto w = std::make_shared<Walk>();
    w->list = std::move(list);
    w->out["tick_rate"] = u64(util::tick_hz());
    w->out["ticks"] = u64(util::ticks());
    w->out["bdevs"] = Json::Value(Json::arrayValue);
    w->req = req;
    auto step = std::make_shared<std::function<void()>>();
    *step = [w, step] {
        if (w->next == w->list.size()) {
            w->req->result(w->out);
            *step = nullptr;  // break the self-reference
            return;
        }
        Bdev *b = w->list[w->next++];
        get_iostat(b, [w, step, b](const IoStats &s) {
            w->out["bdevs"].append(iostat_json(b, s));
            (*step)();
        });
    };
    (*step)();
}

void bdev_wait_for_examine(const RequestPtr &req) {
    ParamDecoder d(req->params());
    d.finish();
    // Every module examines synchronously at register time, so nothing is ever pending.
    req->result(true);
}

void bdev_set_options(const RequestPtr &req) {
    ParamDecoder d(req->params());
    // Bounded so the pool, allocated at init (under 1 KiB a bdev_io), stays sane.
    auto pool = d.optional_uint("bdev_io_pool_size", 1u << 24);
    auto cache = d.optional_uint("bdev_io_cache_size", 65536);
    auto small_cache = d.optional_uint("iobuf_small_cache_size", 65536);
    auto large_cache = d.optional_uint("iobuf_large_cache_size", 65536);
    d.finish();
    Options o = options();
    if (pool) {
        o.bdev_io_pool_size = static_cast<uint32_t>(*pool);
    }
    if (cache) {
        o.bdev_io_cache_size = static_cast<uint32_t>(*cache);
    }
    if (small_cache) {
        o.iobuf_small_cache_size = static_cast<uint32_t>(*small_cache);
    }
    if (large_cache) {
        o.iobuf_large_cache_size = static_cast<uint32_t>(*large_cache);
    }
    if (o.bdev_io_cache_size == 0) {
        throw jsonrpc::Error(kInvalidParams,
                             "Invalid parameter 'bdev_io_cache_size': must be at least 1");
    }
    // SPDK's rule: with every thread's cache full, the global pool still holds at least
    // one cache's worth for whichever thread runs short.
    uint64_t threads = thread::thread_count();
    uint64_t min_pool = uint64_t{o.bdev_io_cache_size} * (threads + 1);
    if (o.bdev_io_pool_size < min_pool) {
        throw jsonrpc::Error(kInvalidParams,
                             "Invalid parameter 'bdev_io_pool_size': must be at least "
                             "bdev_io_cache_size * (threads + 1) = " +
                                 std::to_string(o.bdev_io_cache_size) + " * (" +
                                 std::to_string(threads) + " + 1) = " + std::to_string(min_pool));
    }
    options() = o;
    req->result(true);
}

void write_config(Json::Value &config) {
    Json::Value opts;
    opts["method"] = "bdev_set_options";
    opts["params"]["bdev_io_pool_size"] = options().bdev_io_pool_size;
    opts["params"]["bdev_io_cache_size"] = options().bdev_io_cache_size;
    opts["params"]["iobuf_small_cache_size"] = options().iobuf_small_cache_size;
    opts["params"]["iobuf_large_cache_size"] = options().iobuf_large_cache_size;
    config.append(opts);
    for (Module *m : modules()) {
        m->write_config(config);
    }
    for (Bdev *b : bdevs()) {
        if (!b->state->removing.load()) {
            b->ops->write_config(config);
            qos_write_config(b, config);  // after the entry that creates the bdev
        }
    }
    Json::Value wait;
    wait["method"] = "bdev_wait_for_examine";
    config.append(wait);
}

void bdev_init(std::function<void(int)> done) {
    int rc = layer_init();
    if (rc != 0) {
        done(rc);
        return;
    }
    for (Module *m : modules()) {
        rc = m->init();
        if (rc != 0) {
            FLINT_ERRLOG("bdev module '%s' failed to initialise (%d)", m->name(), rc);
            layer_fini([done, rc] { done(rc); });
            return;
        }
    }
    done(0);
}

void bdev_fini(std::function<void()> done) {
    auto list = bdevs();
    auto remaining = std::make_shared<size_t>(0);
    auto finish = [done] {
        for (auto it = modules().rbegin(); it != modules().rend(); ++it) {
            (*it)->fini();
        }
        free_zero_buffer();
        layer_fini(done);  // once every thread has dropped its channels
    };
    for (Bdev *b : list) {
        ++*remaining;
        if (unregister_bdev(b, [remaining, finish](int) {
                if (--*remaining == 0) {
                    finish();
                }
            }) != 0) {
            --*remaining;  // already being removed; its own caller waits for it
        }
    }
    if (*remaining == 0) {
        finish();
    }
}

}  // namespace

void register_subsystem() {
    if (event::subsystems().find("bdev") != nullptr) {
        return;
    }
    event::register_iobuf_subsystem();  // what bdev depends on
    event::subsystems().add({
        .name = "bdev",
        .depends_on = {"iobuf"},
        .init = bdev_init,
        .fini = bdev_fini,
        .write_config = write_config,
    });
    auto &r = event::rpc_registry();
    r.add("bdev_get_bdevs", bdev_get_bdevs, jsonrpc::kRuntime);
    r.add("bdev_get_iostat", bdev_get_iostat, jsonrpc::kRuntime);
    r.add("bdev_wait_for_examine", bdev_wait_for_examine, jsonrpc::kRuntime);
    r.add("bdev_set_options", bdev_set_options, jsonrpc::kStartup);
    qos_register_rpc();
}

}  // namespace flint::bdev
