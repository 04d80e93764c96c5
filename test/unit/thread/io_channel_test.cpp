#include <gtest/gtest.h>

#include <vector>

#include "flint/thread/thread.h"
#include "flint/util/time.h"

using namespace flint;
using thread::Thread;

namespace {

struct Dev {
    int creates = 0;
    int destroys = 0;
    int fail_create = 0;
};

struct ChanCtx {
    uint64_t magic;
    int visits;
};

class IoChannelTest : public ::testing::Test {
protected:
    void SetUp() override {
        thread::lib_init({});
        for (const char *n : {"t0", "t1", "t2"}) {
            threads_.push_back(thread::create(n));
        }
        thread::io_device_register(
            &dev_,
            [this](void *ctx) {
                if (dev_.fail_create) {
                    return -ENOMEM;
                }
                ++dev_.creates;
                static_cast<ChanCtx *>(ctx)->magic = 0xfeed;
                return 0;
            },
            [this](void *ctx) {
                EXPECT_EQ(0xfeedu, static_cast<ChanCtx *>(ctx)->magic);
                ++dev_.destroys;
            },
            sizeof(ChanCtx), "dev");
    }
    void TearDown() override {
        if (!unregistered_) {
            unregister();
        }
        for (Thread *t : threads_) {
            thread::set_current(t);
            t->exit(100);
            thread::set_current(nullptr);
            for (int i = 0; i < 100 && !t->exited(); ++i) {
                t->poll(32, util::ticks());
            }
            EXPECT_TRUE(t->exited());
            Thread::destroy(t);
        }
        EXPECT_TRUE(thread::lib_fini());
    }
    void unregister() {
        bool done = false;
        on(0, [&] { thread::io_device_unregister(&dev_, [&] { done = true; }); });
        pump();
        EXPECT_TRUE(done);
        unregistered_ = true;
    }
    // Runs fn as thread i.
    template <class F>
    void on(size_t i, F fn) {
        thread::set_current(threads_[i]);
        fn();
        thread::set_current(nullptr);
    }
    void pump() {
        for (int r = 0; r < 20; ++r) {
            for (Thread *t : threads_) {
                t->poll(64, util::ticks());
            }
        }
    }
    Dev dev_;
    bool unregistered_ = false;
    std::vector<Thread *> threads_;
};

TEST_F(IoChannelTest, OneChannelPerThreadWithRefcount) {
    thread::IoChannel *a = nullptr, *b = nullptr, *c = nullptr;
    on(0, [&] {
        a = thread::get_io_channel(&dev_);
        b = thread::get_io_channel(&dev_);
    });
    on(1, [&] { c = thread::get_io_channel(&dev_); });
    ASSERT_NE(nullptr, a);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    EXPECT_EQ(2, dev_.creates);
    EXPECT_EQ(threads_[0], thread::channel_thread(a));
    EXPECT_EQ(0u, reinterpret_cast<uintptr_t>(thread::channel_ctx(a)) % 64);
    EXPECT_EQ(a, thread::channel_from_ctx(thread::channel_ctx(a)));
    on(0, [&] { thread::put_io_channel(a); });
    pump();
    EXPECT_EQ(0, dev_.destroys);  // one reference left
    on(0, [&] { thread::put_io_channel(b); });
    on(1, [&] { thread::put_io_channel(c); });
    pump();
    EXPECT_EQ(2, dev_.destroys);
}

TEST_F(IoChannelTest, DestroyIsDeferredAndCancelledByGet) {
    on(0, [&] {
        auto *a = thread::get_io_channel(&dev_);
        thread::put_io_channel(a);
        auto *again = thread::get_io_channel(&dev_);  // before the deferred destroy runs
        EXPECT_EQ(a, again);
    });
    pump();
    EXPECT_EQ(1, dev_.creates);
    EXPECT_EQ(0, dev_.destroys);
    on(0, [&] {
        auto *a = thread::get_io_channel(&dev_);
        thread::put_io_channel(a);
        thread::put_io_channel(a);
    });
    pump();
    EXPECT_EQ(1, dev_.destroys);
}

TEST_F(IoChannelTest, CreateFailureReturnsNull) {
    dev_.fail_create = 1;
    on(0, [&] { EXPECT_EQ(nullptr, thread::get_io_channel(&dev_)); });
    dev_.fail_create = 0;
    on(0, [&] {
        auto *a = thread::get_io_channel(&dev_);
        EXPECT_NE(nullptr, a);
        thread::put_io_channel(a);
    });
    pump();
}

TEST_F(IoChannelTest, UnknownDeviceAndOutsideThread) {
    int other;
    on(0, [&] { EXPECT_EQ(nullptr, thread::get_io_channel(&other)); });
    EXPECT_EQ(nullptr, thread::get_io_channel(&dev_));  // no current thread
}

TEST_F(IoChannelTest, DuplicateRegisterThrows) {
    EXPECT_THROW(thread::io_device_register(&dev_, nullptr, nullptr, 0, "dup"), std::logic_error);
}

TEST_F(IoChannelTest, UnregisterWaitsForLastChannel) {
    thread::IoChannel *a = nullptr;
    on(1, [&] { a = thread::get_io_channel(&dev_); });
    bool done = false;
    on(0, [&] {
        thread::io_device_unregister(&dev_, [&] {
            EXPECT_EQ(threads_[0], thread::current());
            done = true;
        });
    });
    pump();
    EXPECT_FALSE(done);
    on(2, [&] { EXPECT_EQ(nullptr, thread::get_io_channel(&dev_)); });
    on(1, [&] { thread::put_io_channel(a); });
    pump();
    EXPECT_TRUE(done);
    EXPECT_EQ(1, dev_.destroys);
    unregistered_ = true;
}

TEST_F(IoChannelTest, ForEachChannelVisitsHoldersThenCompletesOnCaller) {
    thread::IoChannel *c0 = nullptr, *c2 = nullptr;
    on(0, [&] { c0 = thread::get_io_channel(&dev_); });
    on(2, [&] { c2 = thread::get_io_channel(&dev_); });
    std::vector<Thread *> visited;
    int status = -1;
    on(1, [&] {
        thread::for_each_channel(
            &dev_,
            [&](thread::ChannelIter &it) {
                visited.push_back(thread::current());
                EXPECT_EQ(thread::current(), thread::channel_thread(it.channel()));
                static_cast<ChanCtx *>(thread::channel_ctx(it.channel()))->visits++;
                it.next(0);
            },
            [&](int st) {
                EXPECT_EQ(threads_[1], thread::current());
                status = st;
            });
    });
    pump();
    EXPECT_EQ(0, status);
    EXPECT_EQ((std::vector<Thread *>{threads_[0], threads_[2]}), visited);
    EXPECT_EQ(1, static_cast<ChanCtx *>(thread::channel_ctx(c0))->visits);
    on(0, [&] { thread::put_io_channel(c0); });
    on(2, [&] { thread::put_io_channel(c2); });
    pump();
}

TEST_F(IoChannelTest, ForEachChannelStopsOnError) {
    thread::IoChannel *c0 = nullptr, *c1 = nullptr;
    on(0, [&] { c0 = thread::get_io_channel(&dev_); });
    on(1, [&] { c1 = thread::get_io_channel(&dev_); });
    int visits = 0, status = 0;
    on(2, [&] {
        thread::for_each_channel(
            &dev_,
            [&](thread::ChannelIter &it) {
                ++visits;
                it.next(-EIO);
            },
            [&](int st) { status = st; });
    });
    pump();
    EXPECT_EQ(1, visits);
    EXPECT_EQ(-EIO, status);
    on(0, [&] { thread::put_io_channel(c0); });
    on(1, [&] { thread::put_io_channel(c1); });
    pump();
}

TEST_F(IoChannelTest, ForEachChannelWithAsyncContinue) {
    thread::IoChannel *c0 = nullptr;
    on(0, [&] { c0 = thread::get_io_channel(&dev_); });
    thread::ChannelIter *held = nullptr;
    bool done = false;
    on(1, [&] {
        thread::for_each_channel(
            &dev_, [&](thread::ChannelIter &it) { held = &it; }, [&](int) { done = true; });
    });
    pump();
    ASSERT_NE(nullptr, held);
    EXPECT_FALSE(done);
    on(0, [&] { held->next(0); });
    pump();
    EXPECT_TRUE(done);
    on(0, [&] { thread::put_io_channel(c0); });
    pump();
}

TEST_F(IoChannelTest, ThreadExitWaitsForChannels) {
    thread::IoChannel *c = nullptr;
    Thread *t = threads_[2];
    on(2, [&] {
        c = thread::get_io_channel(&dev_);
        t->exit(60000);
    });
    pump();
    EXPECT_FALSE(t->exited());
    on(2, [&] { thread::put_io_channel(c); });
    pump();
    EXPECT_TRUE(t->exited());
}

}  // namespace
