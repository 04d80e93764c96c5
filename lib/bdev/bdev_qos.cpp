// QoS rate limits (SPDK's bdev_set_qos_limit), applied on each channel's own thread.
//
// SPDK sends every I/O of a limited bdev to one thread. Here the budgets are atomics the
// bdev's channels share: a channel admits an I/O on its own thread when every budget that
// applies is positive, and subtracts its cost. A poller on the app thread adds a 1 ms
// timeslice's worth each timeslice; an I/O that overdrew leaves a debt that the next
// refills pay first (channels' pollers refill too when the app thread is late). I/O over
// budget waits on its channel, FIFO, until the channel's poller finds budget again. Each refill
// also starts an epoch in which every channel that waits may take an equal share, so the channel
// that polls first cannot take it all.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "bdev_internal.h"
#include "flint/event/app.h"
#include "flint/util/log.h"
#include "flint/util/time.h"

namespace flint::bdev {

enum QosLimit : int { kRwIops, kRwBytes, kReadBytes, kWriteBytes, kNumQosLimits };
static_assert(kNumQosLimits == BdevChannel::kQosLimits);

namespace {

constexpr const char *kLimitNames[kNumQosLimits] = {"rw_ios_per_sec", "rw_mbytes_per_sec",
                                                    "r_mbytes_per_sec", "w_mbytes_per_sec"};
constexpr uint64_t kTimesliceUs = 1000;   // SPDK's SPDK_BDEV_QOS_TIMESLICE_IN_USEC
constexpr uint64_t kMinIosPerSec = 1000;  // SPDK's granularity: one I/O per timeslice
constexpr uint64_t kMaxIosPerSec = 1000000000000000ull;
constexpr uint64_t kMaxMbytesPerSec = 1ull << 32;  // keeps every budget far from overflow
// The most unused budget a bdev banks while no I/O waits for it, in timeslices: the largest
// burst after idling (10 ms of I/O). SPDK drops a timeslice's leftover even when I/O waits,
// which loses rate whenever a channel's poller runs late (its reactor preempted); here
// budget is dropped only while nothing waits.
constexpr int64_t kBankSlices = 10;
// While I/O waits, unused budget is owed to it and kept, up to this many timeslices.
constexpr int64_t kOwedSlices = 100;
// A late refill grants every timeslice it missed, as SPDK does, up to this many (1 s).
constexpr uint64_t kMaxCatchUpSlices = 1000;
// Channels poll for budget this often per timeslice: a refill reaches held I/O soon.
constexpr uint64_t kPollsPerSlice = 8;

std::atomic<bool> g_manual_clock{false};

uint64_t period_us(uint64_t us) {
    return g_manual_clock.load() ? 3600ull * 1000 * 1000 : us;
}

}  // namespace

struct Qos {
    // The budgets, shared by the bdev's channels: taken on each channel's thread, refilled
    // on the app thread. Negative: debt from an I/O that overdrew, paid by the next refills.
    alignas(64) std::atomic<int64_t> remaining[kNumQosLimits]{};
    // Written by each refill: what one waiting channel may take until the next, then the
    // epoch number (release), so a channel that sees the epoch sees its shares.
    alignas(64) std::atomic<int64_t> share[kNumQosLimits]{};
    std::atomic<uint64_t> epoch{1};
    // What one timeslice grants; 0: that limit is off. Written on the app thread.
    std::atomic<int64_t> per_slice[kNumQosLimits]{};
    // Channels holding I/O; changes only when a channel's queue empties or stops being empty.
    alignas(64) std::atomic<int32_t> waiting{0};
    // Start of the timeslice the last refill granted. Whichever poller sees the next
    // timeslice begun (the app thread's, or a channel's) claims the refill with a CAS, so
    // a busy or preempted app thread does not stall the pacing.
    std::atomic<uint64_t> last_tick{0};
    uint64_t slice_ticks = 0;  // set before any channel sees this

    // ---- app thread only ----
    uint64_t limits[kNumQosLimits] = {};  // as set: I/Os per second and MiB per second
    thread::Poller *refill_poller = nullptr;
    bool detaching = false;  // being disabled: new channels must not pick it up
    bool changing = false;   // a walk over the channels (attach or detach) is in progress

    ~Qos() { thread::poller_unregister(&refill_poller); }
};

void QosDeleter::operator()(Qos *q) const {
    delete q;
}

namespace {

// ---- data path: no allocation, lock or log ----

// What an I/O costs against each budget that applies to it. Reads (and compares) count
// against the read and read+write byte budgets, writes (and compare-and-writes) against the
// write and read+write ones.
struct Cost {
    int limit[3];
    int64_t amount[3];
};

Cost cost_of(const BdevIo *io) {
    int dir = io->type == IoType::Read || io->type == IoType::Compare ? kReadBytes : kWriteBytes;
    auto bytes = static_cast<int64_t>(io_bytes(io));
    return {{kRwIops, kRwBytes, dir}, {1, bytes, bytes}};
}

// Starts the channel's count of what it took in this epoch, if a refill began a new one.
void sync_epoch(BdevChannel *bc) {
    uint64_t e = bc->qos->epoch.load(std::memory_order_acquire);
    if (e != bc->qos_epoch) {
        bc->qos_epoch = e;
        std::fill(bc->qos_taken, bc->qos_taken + kNumQosLimits, 0);
    }
}

// True if every budget that applies is positive; then takes the cost (and counts it as
// this channel's). Channels race between the check and the take: the overdraft that can
// cause is a debt like any other.
bool take(BdevChannel *bc, const Cost &c) {
    Qos *q = bc->qos;
    int64_t per[3];
    for (int i = 0; i < 3; ++i) {
        per[i] = q->per_slice[c.limit[i]].load(std::memory_order_relaxed);
        if (per[i] > 0 && q->remaining[c.limit[i]].load(std::memory_order_relaxed) <= 0) {
            return false;
        }
    }
    for (int i = 0; i < 3; ++i) {
        if (per[i] > 0) {
            q->remaining[c.limit[i]].fetch_sub(c.amount[i], std::memory_order_relaxed);
            bc->qos_taken[c.limit[i]] += c.amount[i];
        }
    }
    return true;
}

// True if bc took its share of this epoch in a budget that applies (a first I/O always
// fits, however large: it runs into debt).
bool share_used(BdevChannel *bc, const Cost &c) {
    Qos *q = bc->qos;
    for (int i = 0; i < 3; ++i) {
        int l = c.limit[i];
        if (q->per_slice[l].load(std::memory_order_relaxed) > 0 && bc->qos_taken[l] > 0 &&
            bc->qos_taken[l] >= q->share[l].load(std::memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

bool limited(IoType t) {
    return t == IoType::Read || t == IoType::Write || t == IoType::Compare ||
           t == IoType::CompareAndWrite;
}

BdevIo *pop_held(BdevChannel *bc) {
    BdevIo *io = bc->qos_head;
    bc->qos_head = io->priv->qos_next;
    if (bc->qos_head == nullptr) {
        bc->qos_tail = nullptr;
        bc->qos->waiting.fetch_sub(1, std::memory_order_relaxed);
    }
    io->priv->qos_next = nullptr;
    io->priv->stage = IoStage::Idle;
    return io;
}

// Refills q if a timeslice began since the last refill and no other poller claimed it.
bool maybe_refill(Qos *q, uint64_t now) {
    uint64_t last = q->last_tick.load(std::memory_order_relaxed);
    if (now <= last || now - last < q->slice_ticks) {
        return false;
    }
    uint64_t slices = (now - last) / q->slice_ticks;
    if (!q->last_tick.compare_exchange_strong(last, last + slices * q->slice_ticks,
                                              std::memory_order_relaxed)) {
        return false;  // another thread's poller refilled
    }
    qos_refill(q, slices);
    return true;
}

int channel_poll(void *arg) {
    auto *bc = static_cast<BdevChannel *>(arg);
    bool refilled = maybe_refill(bc->qos, thread::poll_ticks());
    if (bc->qos_head == nullptr) {
        return refilled ? thread::kBusy : thread::kIdle;
    }
    return qos_poll_channel(bc) > 0 || refilled ? thread::kBusy : thread::kIdle;
}

int refill_poll(void *arg) {
    return maybe_refill(static_cast<Qos *>(arg), util::ticks()) ? thread::kBusy : thread::kIdle;
}

// ---- control path ----

void attach(BdevChannel *bc, Qos *q) {
    if (bc->qos != nullptr) {
        return;  // a channel created during the enable walk took it already
    }
    bc->qos = q;
    bc->qos_epoch = 0;
    bc->qos_poller = thread::poller_register(channel_poll, bc,
                                             period_us(kTimesliceUs / kPollsPerSlice), "bdev_qos");
}

void detach(BdevChannel *bc) {
    if (bc->qos == nullptr) {
        return;
    }
    qos_release_held(bc);
    thread::poller_unregister(&bc->qos_poller);
    bc->qos = nullptr;
}

// Stores the per-timeslice grants for q's limits.
void set_per_slice(Qos *q) {
    constexpr uint64_t kSlicesPerSec = 1000000 / kTimesliceUs;
    for (int i = 0; i < kNumQosLimits; ++i) {
        uint64_t per_sec = i == kRwIops ? q->limits[i] : q->limits[i] << 20;
        auto per = static_cast<int64_t>(per_sec / kSlicesPerSec);
        int64_t old = q->per_slice[i].exchange(per, std::memory_order_relaxed);
        if (old == 0 && per != 0) {
            // A limit that was off starts with a full timeslice.
            q->remaining[i].store(per, std::memory_order_relaxed);
            q->share[i].store(per, std::memory_order_relaxed);
        }
    }
}

bool any_limit(const uint64_t *limits) {
    return std::any_of(limits, limits + kNumQosLimits, [](uint64_t v) { return v != 0; });
}

// Applies new limits to b (app thread): creates the QoS state and attaches it to every
// channel, updates it in place, or detaches it from every channel and frees it. done(0) when
// the change is in force, or done(-EAGAIN) if another change is still in progress.
void set_limits(Bdev *b, const std::optional<uint64_t> (&given)[kNumQosLimits],
                std::function<void(int)> done) {
    BdevState &st = *b->state;
    std::unique_lock lock(registry_mutex());
    Qos *q = st.qos.get();
    if (q != nullptr && q->changing) {
        lock.unlock();
        done(-EAGAIN);
        return;
    }
    uint64_t limits[kNumQosLimits] = {};
    for (int i = 0; i < kNumQosLimits; ++i) {
        limits[i] = given[i].value_or(q != nullptr ? q->limits[i] : 0);
    }
    if (q == nullptr && !any_limit(limits)) {
        lock.unlock();
        done(0);
        return;
    }
    if (q != nullptr && any_limit(limits)) {
        std::copy(limits, limits + kNumQosLimits, q->limits);
        set_per_slice(q);
        lock.unlock();
        FLINT_NOTICELOG("bdev '%s': QoS limits changed", b->name.c_str());
        done(0);
        return;
    }
    if (q == nullptr) {
        st.qos.reset(new Qos);
        q = st.qos.get();
        std::copy(limits, limits + kNumQosLimits, q->limits);
        set_per_slice(q);
        q->slice_ticks = std::max<uint64_t>(1, util::us_to_ticks(kTimesliceUs));
        q->last_tick.store(util::ticks(), std::memory_order_relaxed);
        q->refill_poller =
            thread::poller_register(refill_poll, q, period_us(kTimesliceUs), "bdev_qos_refill");
        q->changing = true;
        lock.unlock();
        FLINT_NOTICELOG("bdev '%s': QoS enabled", b->name.c_str());
        thread::for_each_channel(
            b,
            [q](thread::ChannelIter &it) {
                attach(bdev_channel(it.channel()), q);
                it.next(0);
            },
            [q, done = std::move(done)](int) {
                q->changing = false;
                done(0);
            });
        return;
    }
    // Every limit is now off: release what the channels hold, then free the state.
    std::fill(q->limits, q->limits + kNumQosLimits, 0);
    q->detaching = true;
    q->changing = true;
    lock.unlock();
    thread::for_each_channel(
        b,
        [](thread::ChannelIter &it) {
            detach(bdev_channel(it.channel()));
            it.next(0);
        },
        [b, done = std::move(done)](int) {
            std::unique_ptr<Qos, QosDeleter> dead;
            {
                std::lock_guard lock(registry_mutex());
                dead = std::move(b->state->qos);
            }
            FLINT_NOTICELOG("bdev '%s': QoS disabled", b->name.c_str());
            done(0);
        });
}

void rpc_bdev_set_qos_limit(const jsonrpc::RequestPtr &req) {
    jsonrpc::ParamDecoder d(req->params());
    std::string name = d.required_string("name");
    std::optional<uint64_t> given[kNumQosLimits];
    for (int i = 0; i < kNumQosLimits; ++i) {
        given[i] = d.optional_uint(kLimitNames[i], i == kRwIops ? kMaxIosPerSec : kMaxMbytesPerSec);
    }
    d.finish();
    if (std::none_of(std::begin(given), std::end(given),
                     [](const auto &v) { return v.has_value(); })) {
        throw jsonrpc::Error(jsonrpc::kInvalidParams,
                             "Invalid parameters: give at least one of rw_ios_per_sec, "
                             "rw_mbytes_per_sec, r_mbytes_per_sec, w_mbytes_per_sec");
    }
    if (given[kRwIops].value_or(0) % kMinIosPerSec != 0) {
        throw jsonrpc::Error(jsonrpc::kInvalidParams,
                             "Invalid parameter 'rw_ios_per_sec': must be a multiple of 1000 "
                             "(0: no limit)");
    }
    // The descriptor keeps the bdev from being destroyed until the change is in force.
    Desc *desc = nullptr;
    if (open(name, false, nullptr, &desc) != 0) {
        throw jsonrpc::Error(-ENODEV, "No such device");
    }
    set_limits(desc_bdev(desc), given, [req, desc](int rc) {
        close(desc);
        if (rc != 0) {
            req->error(jsonrpc::kInvalidParams,
                       std::string("Failed to configure rate limit: ") + std::strerror(-rc));
        } else {
            req->result(true);
        }
    });
}

}  // namespace

// ---- data path ----

bool qos_admit(BdevIo *io) {
    BdevChannel *bc = io->priv->ch;
    // A frozen channel (reset) aborts the I/O at once in execute(): nothing to hold.
    if (!limited(io->type) || bc->frozen) {
        return true;
    }
    if (bc->qos_head == nullptr) {
        sync_epoch(bc);
        if (take(bc, cost_of(io))) {
            return true;
        }
    }
    io->priv->stage = IoStage::QosHeld;
    io->priv->qos_next = nullptr;
    if (bc->qos_tail != nullptr) {
        bc->qos_tail->priv->qos_next = io;
    } else {
        bc->qos_head = io;
        bc->qos->waiting.fetch_add(1, std::memory_order_relaxed);
    }
    bc->qos_tail = io;
    return false;
}

int qos_poll_channel(BdevChannel *bc) {
    sync_epoch(bc);
    int n = 0;
    while (bc->qos_head != nullptr) {
        if (!bc->frozen) {  // frozen: execute() aborts them, at no cost
            Cost c = cost_of(bc->qos_head);
            if (share_used(bc, c) || !take(bc, c)) {
                break;
            }
        }
        execute(pop_held(bc));
        ++n;
    }
    return n;
}

void qos_release_held(BdevChannel *bc) {
    while (bc->qos_head != nullptr) {
        execute(pop_held(bc));
    }
}

bool qos_unqueue(BdevChannel *bc, BdevIo *io) {
    BdevIo *prev = nullptr;
    for (BdevIo *it = bc->qos_head; it != nullptr; prev = it, it = it->priv->qos_next) {
        if (it != io) {
            continue;
        }
        if (prev != nullptr) {
            prev->priv->qos_next = io->priv->qos_next;
        } else {
            bc->qos_head = io->priv->qos_next;
        }
        if (bc->qos_tail == io) {
            bc->qos_tail = prev;
        }
        if (bc->qos_head == nullptr) {
            bc->qos->waiting.fetch_sub(1, std::memory_order_relaxed);
        }
        io->priv->qos_next = nullptr;
        io->priv->stage = IoStage::Idle;
        return true;
    }
    return false;
}

void qos_refill(Qos *q, uint64_t slices) {
    auto n = static_cast<int64_t>(std::min(slices, kMaxCatchUpSlices));
    int64_t waiting = q->waiting.load(std::memory_order_relaxed);
    // Unused budget is owed to I/O that waits for it; with none waiting, the bank is capped.
    int64_t bank = waiting > 0 ? kOwedSlices : kBankSlices - 1;
    for (int i = 0; i < kNumQosLimits; ++i) {
        int64_t per = q->per_slice[i].load(std::memory_order_relaxed);
        if (per == 0) {
            continue;
        }
        // Debt is paid first.
        int64_t r = q->remaining[i].load(std::memory_order_relaxed);
        int64_t next;
        do {
            next = std::min(r, per * bank) + per * n;
            if (waiting == 0) {
                // Missed timeslices are no one's: the burst stays within the bank.
                next = std::min(next, per * kBankSlices);
            }
        } while (!q->remaining[i].compare_exchange_weak(r, next, std::memory_order_relaxed));
        // Rounded up: a share never strands a unit of budget.
        q->share[i].store(
            (next + std::max<int64_t>(waiting, 1) - 1) / std::max<int64_t>(waiting, 1),
            std::memory_order_relaxed);
    }
    q->epoch.fetch_add(1, std::memory_order_release);
}

// ---- control path ----

void qos_channel_init(BdevChannel *bc) {
    std::lock_guard lock(registry_mutex());
    Qos *q = bc->bdev->state->qos.get();
    if (q != nullptr && !q->detaching) {
        attach(bc, q);
    }
}

void qos_channel_fini(BdevChannel *bc) {
    if (bc->qos_head != nullptr) {
        // Like outstanding I/O at destroy: the user broke the contract; their callbacks
        // cannot run on a channel that is going away.
        size_t n = 0;
        for (BdevIo *io = bc->qos_head; io != nullptr; io = io->priv->qos_next) {
            ++n;
        }
        FLINT_ERRLOG("bdev '%s': channel destroyed with %zu I/O held by QoS",
                     bc->bdev->name.c_str(), n);
        bc->qos_head = bc->qos_tail = nullptr;
        bc->qos->waiting.fetch_sub(1, std::memory_order_relaxed);
    }
    thread::poller_unregister(&bc->qos_poller);
    bc->qos = nullptr;
}

void qos_free(Bdev *b) {
    std::unique_ptr<Qos, QosDeleter> dead;
    std::lock_guard lock(registry_mutex());
    dead = std::move(b->state->qos);
}

void qos_limits_json(Bdev *b, Json::Value &out) {
    std::lock_guard lock(registry_mutex());
    const Qos *q = b->state->qos.get();
    for (int i = 0; i < kNumQosLimits; ++i) {
        out[kLimitNames[i]] = static_cast<Json::UInt64>(q != nullptr ? q->limits[i] : 0);
    }
}

void qos_write_config(Bdev *b, Json::Value &config) {
    Json::Value params;
    {
        std::lock_guard lock(registry_mutex());
        const Qos *q = b->state->qos.get();
        if (q == nullptr || !any_limit(q->limits)) {
            return;
        }
        params["name"] = b->name;
        for (int i = 0; i < kNumQosLimits; ++i) {
            if (q->limits[i] != 0) {  // as SPDK writes it: the limits that are set
                params[kLimitNames[i]] = static_cast<Json::UInt64>(q->limits[i]);
            }
        }
    }
    Json::Value entry;
    entry["method"] = "bdev_set_qos_limit";
    entry["params"] = params;
    config.append(entry);
}

void qos_register_rpc() {
    event::rpc_registry().add("bdev_set_qos_limit", rpc_bdev_set_qos_limit, jsonrpc::kRuntime);
}

void qos_set_manual_clock(bool manual) {
    g_manual_clock.store(manual);
}

}  // namespace flint::bdev
