#pragma once
// Logging to stderr with a level threshold and per-component debug flags.
// Safe to call from any thread; each line is written with one write(2) call.
// Not for the data path: callers never log per I/O.

#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace flint::log {

enum class Level : int { Disabled = -1, Error = 0, Warn = 1, Notice = 2, Info = 3, Debug = 4 };

// Parses SPDK's level names ("ERROR", "WARNING", "NOTICE", "INFO", "DEBUG", "DISABLED"),
// case-insensitively. Returns nullopt for anything else.
std::optional<Level> parse_level(std::string_view name);
const char *level_name(Level level);

// Messages at or below this level are printed. Default: Notice.
void set_level(Level level);
Level level();

// A component's debug flag. Define one per component at namespace scope with
// FLINT_LOG_FLAG(name); it registers itself before main().
class Flag {
public:
    explicit Flag(const char *name);
    Flag(const Flag &) = delete;
    Flag &operator=(const Flag &) = delete;
    const char *name() const { return name_; }
    bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
    void set(bool on) { enabled_.store(on, std::memory_order_relaxed); }

private:
    const char *name_;
    std::atomic<bool> enabled_{false};
};

// Sets or clears a flag by name; "all" names every flag. Returns false if no such flag.
bool set_flag(std::string_view name, bool on);
// Every registered flag and whether it is on, sorted by name.
std::map<std::string, bool> flags();

void write(Level level, const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void write_debug(const Flag &flag, const char *file, int line, const char *func, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));

}  // namespace flint::log

#define FLINT_LOG_FLAG(n) ::flint::log::Flag g_flint_log_flag_##n(#n)
#define FLINT_LOG_FLAG_EXTERN(n) extern ::flint::log::Flag g_flint_log_flag_##n

#define FLINT_LOG_AT(lvl, ...)                                                   \
    do {                                                                         \
        if (static_cast<int>(lvl) <= static_cast<int>(::flint::log::level())) {  \
            ::flint::log::write(lvl, __FILE__, __LINE__, __func__, __VA_ARGS__); \
        }                                                                        \
    } while (0)
#define FLINT_ERRLOG(...) FLINT_LOG_AT(::flint::log::Level::Error, __VA_ARGS__)
#define FLINT_WARNLOG(...) FLINT_LOG_AT(::flint::log::Level::Warn, __VA_ARGS__)
#define FLINT_NOTICELOG(...) FLINT_LOG_AT(::flint::log::Level::Notice, __VA_ARGS__)
#define FLINT_INFOLOG(...) FLINT_LOG_AT(::flint::log::Level::Info, __VA_ARGS__)
// Printed when the component's flag is on (set with -L or log_set_flag), whatever the level.
#define FLINT_DEBUGLOG(n, ...)                                                            \
    do {                                                                                  \
        if (g_flint_log_flag_##n.enabled()) {                                             \
            ::flint::log::write_debug(g_flint_log_flag_##n, __FILE__, __LINE__, __func__, \
                                      __VA_ARGS__);                                       \
        }                                                                                 \
    } while (0)
