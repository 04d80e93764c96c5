#include "flint/util/log.h"

#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <vector>

namespace flint::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::Notice)};

// Flags register from static constructors; a function-local static avoids init-order issues.
struct FlagRegistry {
    std::mutex mu;
    std::vector<Flag *> flags;
};
FlagRegistry &registry() {
    static FlagRegistry r;
    return r;
}

const char *basename_of(const char *path) {
    const char *slash = std::strrchr(path, '/');
    return slash ? slash + 1 : path;
}

void vwrite(const char *tag, const char *file, int line, const char *func, const char *fmt,
            va_list ap) {
    char buf[4096];
    timeval tv{};
    gettimeofday(&tv, nullptr);
    tm tmv{};
    localtime_r(&tv.tv_sec, &tmv);
    int n = std::snprintf(buf, sizeof(buf), "[%04d-%02d-%02d %02d:%02d:%02d.%06ld] %s:%d %s: %s",
                          tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min,
                          tmv.tm_sec, static_cast<long>(tv.tv_usec), basename_of(file), line, func,
                          tag);
    if (n < 0) {
        return;
    }
    size_t len = std::min(static_cast<size_t>(n), sizeof(buf) - 1);
    int m = std::vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
    if (m > 0) {
        len = std::min(len + static_cast<size_t>(m), sizeof(buf) - 2);
    }
    if (len == 0 || buf[len - 1] != '\n') {
        buf[len++] = '\n';
    }
    // One write so lines from different threads never interleave.
    ssize_t rc = ::write(STDERR_FILENO, buf, len);
    (void)rc;
}

const char *tag_of(Level level) {
    switch (level) {
        case Level::Error:
            return "*ERROR*: ";
        case Level::Warn:
            return "*WARNING*: ";
        case Level::Notice:
            return "*NOTICE*: ";
        case Level::Info:
            return "*INFO*: ";
        case Level::Debug:
            return "*DEBUG*: ";
        case Level::Disabled:
            break;
    }
    return "";
}

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
    static const std::pair<const char *, Level> kNames[] = {
        {"DISABLED", Level::Disabled}, {"ERROR", Level::Error},   {"WARNING", Level::Warn},
        {"WARN", Level::Warn},         {"NOTICE", Level::Notice}, {"INFO", Level::Info},
        {"DEBUG", Level::Debug},
    };
    for (const auto &[n, l] : kNames) {
        if (name.size() == std::strlen(n) && strncasecmp(name.data(), n, name.size()) == 0) {
            return l;
        }
    }
    return std::nullopt;
}

const char *level_name(Level level) {
    switch (level) {
        case Level::Disabled:
            return "DISABLED";
        case Level::Error:
            return "ERROR";
        case Level::Warn:
            return "WARNING";
        case Level::Notice:
            return "NOTICE";
        case Level::Info:
            return "INFO";
        case Level::Debug:
            return "DEBUG";
    }
    return "UNKNOWN";
}

void set_level(Level l) {
    g_level.store(static_cast<int>(l), std::memory_order_relaxed);
}
Level level() {
    return static_cast<Level>(g_level.load(std::memory_order_relaxed));
}

Flag::Flag(const char *name) : name_(name) {
    auto &r = registry();
    std::lock_guard lock(r.mu);
    r.flags.push_back(this);
}

bool set_flag(std::string_view name, bool on) {
    auto &r = registry();
    std::lock_guard lock(r.mu);
    bool found = false;
    for (Flag *f : r.flags) {
        if (name == "all" || name == f->name()) {
            f->set(on);
            found = true;
        }
    }
    return found;
}

std::map<std::string, bool> flags() {
    auto &r = registry();
    std::lock_guard lock(r.mu);
    std::map<std::string, bool> out;
    for (Flag *f : r.flags) {
        out[f->name()] = f->enabled();
    }
    return out;
}

void write(Level level, const char *file, int line, const char *func, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vwrite(tag_of(level), file, line, func, fmt, ap);
    va_end(ap);
}

void write_debug(const Flag &flag, const char *file, int line, const char *func, const char *fmt,
                 ...) {
    char tag[64];
    std::snprintf(tag, sizeof(tag), "*DEBUG* [%s]: ", flag.name());
    va_list ap;
    va_start(ap, fmt);
    vwrite(tag, file, line, func, fmt, ap);
    va_end(ap);
}

}  // namespace flint::log
