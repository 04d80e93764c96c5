#include "flint/thread/thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "flint/util/time.h"

using namespace flint;
using thread::Thread;

namespace {

// Polls a thread from the test's OS thread, with a virtual clock.
struct Driver {
    Thread *t;
    uint64_t now = util::ticks();
    int poll() { return t->poll(1024, now); }
    void advance_us(uint64_t us) { now += util::us_to_ticks(us); }
};

class ThreadTest : public ::testing::Test {
protected:
    void SetUp() override { thread::lib_init({}); }
    void TearDown() override {
        for (Thread *t : threads_) {
            thread::set_current(t);
            t->exit(100);
            uint64_t now = util::ticks();
            for (int i = 0; i < 1000 && !t->exited(); ++i) {
                t->poll(1024, now);
                now += util::us_to_ticks(1000);
            }
            thread::set_current(nullptr);
            Thread::destroy(t);
        }
        EXPECT_TRUE(thread::lib_fini());
    }
    Thread *make(const char *name) {
        Thread *t = thread::create(name);
        threads_.push_back(t);
        return t;
    }
    std::vector<Thread *> threads_;
};

TEST_F(ThreadTest, MessagesRunInOrderOnTarget) {
    Thread *t = make("t");
    std::vector<int> seen;
    struct Ctx {
        std::vector<int> *seen;
        int v;
    };
    std::vector<Ctx> ctxs;
    ctxs.reserve(100);
    for (int i = 0; i < 100; ++i) {
        ctxs.push_back({&seen, i});
    }
    for (auto &c : ctxs) {
        ASSERT_EQ(0, thread::send_msg(
                         t,
                         [](void *a) {
                             auto *c = static_cast<Ctx *>(a);
                             c->seen->push_back(c->v);
                         },
                         &c));
    }
    Driver d{t};
    d.poll();
    ASSERT_EQ(100u, seen.size());
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(i, seen[i]);
    }
    EXPECT_EQ(100u, t->stats().msgs);
}

TEST_F(ThreadTest, CrossThreadProducersKeepPerSenderOrder) {
    Thread *t = make("consumer");
    constexpr int kProducers = 2;
    constexpr int kPerProducer = 100000;
    struct State {
        std::vector<int> last = std::vector<int>(kProducers, -1);
        bool ordered = true;
        int received = 0;
    } st;
    // Encode producer and sequence in the pointer value to avoid allocation.
    static State *g_state;
    g_state = &st;
    auto on_msg = [](void *a) {
        auto v = reinterpret_cast<uintptr_t>(a);
        int p = static_cast<int>(v >> 32);
        int seq = static_cast<int>(v & 0xffffffff);
        if (seq != g_state->last[p] + 1) {
            g_state->ordered = false;
        }
        g_state->last[p] = seq;
        ++g_state->received;
    };
    std::atomic<bool> go{false};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([&, p] {
            while (!go.load()) {
            }
            for (int i = 0; i < kPerProducer; ++i) {
                auto v = (static_cast<uintptr_t>(p) << 32) | static_cast<uintptr_t>(i);
                while (thread::send_msg(t, on_msg, reinterpret_cast<void *>(v)) == -ENOMEM) {
                    std::this_thread::yield();
                }
            }
        });
    }
    go = true;
    Driver d{t};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (st.received < kProducers * kPerProducer && std::chrono::steady_clock::now() < deadline) {
        d.poll();
    }
    for (auto &p : producers) {
        p.join();
    }
    d.poll();
    EXPECT_EQ(kProducers * kPerProducer, st.received);
    EXPECT_TRUE(st.ordered);
}

TEST_F(ThreadTest, SelfMessagesAreFifoAndGrowPastInitialCapacity) {
    Thread *t = make("self");
    static std::vector<int> seen;
    seen.clear();
    thread::set_current(t);
    for (intptr_t i = 0; i < 5000; ++i) {
        ASSERT_EQ(
            0,
            thread::send_msg(
                t, [](void *a) { seen.push_back(static_cast<int>(reinterpret_cast<intptr_t>(a))); },
                reinterpret_cast<void *>(i)));
    }
    thread::set_current(nullptr);
    Driver d{t};
    while (seen.size() < 5000) {
        ASSERT_EQ(thread::kBusy, d.poll());
    }
    for (int i = 0; i < 5000; ++i) {
        ASSERT_EQ(i, seen[i]);
    }
}

TEST_F(ThreadTest, FullRingReportsNoMemory) {
    thread::lib_init({.schedule = {}, .msg_ring_size = 16});
    Thread *t = make("small");
    int sent = 0;
    while (thread::send_msg(
               t, [](void *) {}, nullptr) == 0) {
        ++sent;
        ASSERT_LT(sent, 100);
    }
    EXPECT_EQ(15, sent);  // an rte_ring holds size - 1
    EXPECT_EQ(-ENOMEM, thread::send_msg(
                           t, [](void *) {}, nullptr));
    Driver d{t};
    d.poll();
    EXPECT_EQ(0, thread::send_msg(
                     t, [](void *) {}, nullptr));
}

TEST_F(ThreadTest, SendToExitedThreadFails) {
    Thread *t = thread::create("gone");
    thread::set_current(t);
    t->exit();
    thread::set_current(nullptr);
    Driver d{t};
    d.poll();
    ASSERT_TRUE(t->exited());
    EXPECT_EQ(-EIO, thread::send_msg(
                        t, [](void *) {}, nullptr));
    Thread::destroy(t);
}

TEST_F(ThreadTest, SendFnRunsCallable) {
    Thread *t = make("fn");
    int hit = 0;
    ASSERT_EQ(0, thread::send_fn(t, [&] {
                  hit = 1;
                  EXPECT_EQ(t, thread::current());
              }));
    Driver d{t};
    d.poll();
    EXPECT_EQ(1, hit);
    EXPECT_EQ(nullptr, thread::current());
}

int count_poller(void *arg) {
    ++*static_cast<int *>(arg);
    return thread::kBusy;
}

TEST_F(ThreadTest, ActivePollerRunsEveryPoll) {
    Thread *t = make("p");
    Driver d{t};
    int runs = 0;
    thread::set_current(t);
    thread::Poller *p = thread::poller_register(count_poller, &runs, 0, "count");
    thread::set_current(nullptr);
    ASSERT_NE(nullptr, p);
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(thread::kBusy, d.poll());
    }
    EXPECT_EQ(10, runs);
    EXPECT_EQ(1u, t->active_poller_count());
    thread::set_current(t);
    thread::poller_unregister(&p);
    EXPECT_EQ(nullptr, p);
    thread::set_current(nullptr);
    d.poll();
    EXPECT_EQ(10, runs);
    EXPECT_EQ(0u, t->active_poller_count());
}

TEST_F(ThreadTest, TimedPollerRunsOnItsPeriod) {
    Thread *t = make("timed");
    Driver d{t};
    d.poll();  // sets the thread's clock
    int runs = 0;
    thread::set_current(t);
    thread::Poller *p = thread::poller_register(count_poller, &runs, 1000, "ms");
    thread::set_current(nullptr);
    d.advance_us(999);
    d.poll();
    EXPECT_EQ(0, runs);
    d.advance_us(1);
    d.poll();
    EXPECT_EQ(1, runs);
    d.poll();
    EXPECT_EQ(1, runs);  // not again until another period passes
    d.advance_us(1000);
    d.poll();
    EXPECT_EQ(2, runs);
    d.advance_us(10000);
    d.poll();
    EXPECT_EQ(3, runs);  // missed periods do not pile up
    auto info = t->pollers(1);
    ASSERT_EQ(1u, info.size());
    EXPECT_EQ("ms", info[0].name);
    EXPECT_EQ(3u, info[0].run_count);
    EXPECT_EQ(util::us_to_ticks(1000), info[0].period_ticks);
    thread::set_current(t);
    thread::poller_unregister(&p);
    thread::set_current(nullptr);
    EXPECT_EQ(0u, t->timed_poller_count());
}

TEST_F(ThreadTest, PauseAndResume) {
    Thread *t = make("pause");
    Driver d{t};
    d.poll();
    int active_runs = 0, timed_runs = 0;
    thread::set_current(t);
    thread::Poller *a = thread::poller_register(count_poller, &active_runs, 0, "a");
    thread::Poller *b = thread::poller_register(count_poller, &timed_runs, 100, "b");
    thread::poller_pause(a);
    thread::poller_pause(b);
    thread::set_current(nullptr);
    d.advance_us(500);
    d.poll();
    EXPECT_EQ(0, active_runs);
    EXPECT_EQ(0, timed_runs);
    EXPECT_EQ(2u, t->paused_poller_count());
    EXPECT_EQ(2u, t->pollers(2).size());
    thread::set_current(t);
    thread::poller_resume(a);
    thread::poller_resume(b);
    thread::set_current(nullptr);
    d.poll();
    EXPECT_EQ(1, active_runs);
    EXPECT_EQ(0, timed_runs);  // a resumed timed poller waits a full period
    d.advance_us(100);
    d.poll();
    EXPECT_EQ(2, active_runs);
    EXPECT_EQ(1, timed_runs);
    EXPECT_EQ(0u, t->paused_poller_count());
    thread::set_current(t);
    thread::poller_unregister(&a);
    thread::poller_unregister(&b);
    thread::set_current(nullptr);
}

struct SelfCtx {
    thread::Poller *self = nullptr;
    int runs = 0;
    int stop_after = 3;
    bool pause = false;
};

int self_poller(void *arg) {
    auto *c = static_cast<SelfCtx *>(arg);
    if (++c->runs == c->stop_after) {
        if (c->pause) {
            thread::poller_pause(c->self);
        } else {
            thread::poller_unregister(&c->self);
        }
    }
    return thread::kIdle;
}

TEST_F(ThreadTest, PollerUnregistersItself) {
    Thread *t = make("selfunreg");
    Driver d{t};
    d.poll();
    SelfCtx active, timed;
    thread::set_current(t);
    active.self = thread::poller_register(self_poller, &active, 0, "active-self");
    timed.self = thread::poller_register(self_poller, &timed, 10, "timed-self");
    thread::set_current(nullptr);
    for (int i = 0; i < 10; ++i) {
        d.advance_us(10);
        d.poll();
    }
    EXPECT_EQ(3, active.runs);
    EXPECT_EQ(3, timed.runs);
    EXPECT_EQ(nullptr, active.self);
    EXPECT_EQ(nullptr, timed.self);
    EXPECT_EQ(0u, t->active_poller_count());
    EXPECT_EQ(0u, t->timed_poller_count());
}

TEST_F(ThreadTest, PollerPausesItself) {
    Thread *t = make("selfpause");
    Driver d{t};
    d.poll();
    SelfCtx c;
    c.pause = true;
    thread::set_current(t);
    c.self = thread::poller_register(self_poller, &c, 10, "timed-pause");
    thread::set_current(nullptr);
    for (int i = 0; i < 10; ++i) {
        d.advance_us(10);
        d.poll();
    }
    EXPECT_EQ(3, c.runs);
    EXPECT_EQ(1u, t->paused_poller_count());
    thread::set_current(t);
    thread::poller_unregister(&c.self);
    thread::set_current(nullptr);
    EXPECT_EQ(0u, t->paused_poller_count());
}

TEST_F(ThreadTest, ExitWaitsForPollersThenCompletes) {
    Thread *t = thread::create("exiting");
    Driver d{t};
    int runs = 0;
    thread::set_current(t);
    thread::Poller *p = thread::poller_register(count_poller, &runs, 0, "holder");
    t->exit(60000);
    thread::set_current(nullptr);
    d.poll();
    EXPECT_EQ(thread::ThreadState::Exiting, t->state());
    EXPECT_EQ(1, runs);  // pollers keep running while the thread exits
    thread::set_current(t);
    thread::poller_unregister(&p);
    thread::set_current(nullptr);
    d.poll();
    EXPECT_TRUE(t->exited());
    Thread::destroy(t);
}

TEST_F(ThreadTest, ExitTimesOutAndNamesLeaks) {
    Thread *t = thread::create("leaky");
    Driver d{t};
    int runs = 0;
    thread::set_current(t);
    thread::poller_register(count_poller, &runs, 0, "leaked-poller");
    t->exit(10);
    thread::set_current(nullptr);
    d.poll();
    EXPECT_FALSE(t->exited());
    testing::internal::CaptureStderr();
    d.advance_us(1000000);
    d.poll();
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(t->exited());
    EXPECT_NE(std::string::npos, err.find("leaked-poller")) << err;
    EXPECT_NE(std::string::npos, err.find("timed out")) << err;
    Thread::destroy(t);
}

TEST_F(ThreadTest, ExitWaitsForPendingMessages) {
    Thread *t = thread::create("drain");
    Driver d{t};
    thread::set_current(t);
    t->exit(60000);
    thread::set_current(nullptr);
    int ran = 0;
    // Queued after exit began: must still run before the thread is gone.
    ASSERT_EQ(0, thread::send_fn(t, [&] { ++ran; }));
    t->poll(0, d.now);  // no messages this round
    EXPECT_FALSE(t->exited());
    d.poll();
    EXPECT_EQ(1, ran);
    EXPECT_TRUE(t->exited());
    Thread::destroy(t);
}

TEST_F(ThreadTest, ForEachThreadVisitsAllThenCompletes) {
    Thread *a = make("a");
    Thread *b = make("b");
    Thread *c = make("c");
    std::vector<std::string> visited;
    bool done = false;
    thread::set_current(a);
    thread::for_each_thread([&](Thread *t) { visited.push_back(t->name()); },
                            [&] {
                                EXPECT_EQ(a, thread::current());
                                done = true;
                            });
    thread::set_current(nullptr);
    for (int i = 0; i < 10 && !done; ++i) {
        for (Thread *t : {a, b, c}) {
            t->poll(32, util::ticks());
        }
    }
    EXPECT_TRUE(done);
    EXPECT_EQ((std::vector<std::string>{"a", "b", "c"}), visited);
}

TEST_F(ThreadTest, SchedulerIsCalledAndCanRefuse) {
    std::vector<Thread *> scheduled;
    thread::lib_init({.schedule = [&](Thread *t) {
        if (t->name() == "refused") {
            return -ENOSPC;
        }
        scheduled.push_back(t);
        return 0;
    }});
    Thread *t = make("placed");
    ASSERT_EQ(1u, scheduled.size());
    EXPECT_EQ(t, scheduled[0]);
    EXPECT_EQ(nullptr, thread::create("refused"));
    EXPECT_EQ(1u, thread::thread_count());
}

}  // namespace
