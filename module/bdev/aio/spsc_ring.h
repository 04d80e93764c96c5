#pragma once
// A bounded single-producer, single-consumer ring of trivially copyable values. One OS thread
// pushes and one pops (or a succession of them, each handing over with a happens-before). After
// init() nothing allocates, locks or blocks.

#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>

namespace flint::bdev_aio {

template <class T>
class SpscRing {
    static_assert(std::is_trivially_copyable_v<T>, "slots are copied without constructors");

public:
    SpscRing() = default;
    SpscRing(const SpscRing &) = delete;
    SpscRing &operator=(const SpscRing &) = delete;

    // Control path, before either side runs. capacity must be a power of two (the indexes run
    // freely and wrap at 2^32, so a slot is index & mask). False if it is not, or on no memory.
    bool init(uint32_t capacity) {
        if (capacity == 0 || (capacity & (capacity - 1)) != 0 || capacity > (1u << 31)) {
            return false;
        }
        slots_.reset(new (std::nothrow) T[capacity]);
        cap_ = slots_ ? capacity : 0;
        return slots_ != nullptr;
    }
    uint32_t capacity() const { return cap_; }

    // Producer. False when full. publish is release, or seq_cst when the producer goes on to
    // read a flag the consumer sets before it re-checks empty() (a sleep/wake handshake).
    bool push(const T &v, std::memory_order publish = std::memory_order_release) {
        uint32_t t = tail_.load(std::memory_order_relaxed);
        if (t - head_cache_ == cap_) {
            head_cache_ = head_.load(std::memory_order_acquire);
            if (t - head_cache_ == cap_) {
                return false;
            }
        }
        slots_[t & (cap_ - 1)] = v;
        tail_.store(t + 1, publish);
        return true;
    }

    // Consumer. False when empty.
    bool pop(T *out) {
        uint32_t h = head_.load(std::memory_order_relaxed);
        if (h == tail_cache_) {
            tail_cache_ = tail_.load(std::memory_order_acquire);
            if (h == tail_cache_) {
                return false;
            }
        }
        *out = slots_[h & (cap_ - 1)];
        head_.store(h + 1, std::memory_order_release);
        return true;
    }

    // Consumer: whether nothing is waiting. order: acquire, or seq_cst to pair with a seq_cst
    // push in the handshake above.
    bool empty(std::memory_order order = std::memory_order_acquire) const {
        return head_.load(std::memory_order_relaxed) == tail_.load(order);
    }

private:
    // Each side's index and its cached view of the other's on separate cache lines, so that a
    // push and a pop touch a shared line only when the cache runs out.
    alignas(64) std::atomic<uint32_t> tail_{0};  // written by the producer
    uint32_t head_cache_ = 0;                    // producer only
    alignas(64) std::atomic<uint32_t> head_{0};  // written by the consumer
    uint32_t tail_cache_ = 0;                    // consumer only
    alignas(64) std::unique_ptr<T[]> slots_;     // written by init only
    uint32_t cap_ = 0;
};

}  // namespace flint::bdev_aio
