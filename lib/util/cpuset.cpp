#include "flint/util/cpuset.h"

#include <cctype>

namespace flint::util {
namespace {

bool parse_uint(std::string_view s, uint32_t *out) {
    if (s.empty() || s.size() > 6) {
        return false;
    }
    uint32_t v = 0;
    for (char c : s) {
        if (!std::isdigit(static_cast<unsigned char>(c))) {
            return false;
        }
        v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    *out = v;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
        s.remove_prefix(1);
    }
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

bool CpuSet::parse(std::string_view text, std::string *error) {
    std::bitset<kMaxCores> bits;
    text = trim(text);
    if (text.empty()) {
        *error = "empty core mask";
        return false;
    }
    bool is_list = text.front() == '[' || text.find_first_of(",-") != std::string_view::npos;
    if (!is_list) {
        // Hex mask, with or without 0x; the lowest nibble is the last character.
        if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
            text.remove_prefix(2);
        }
        if (text.empty() || text.size() > kMaxCores / 4) {
            *error = "core mask has no digits or is too long";
            return false;
        }
        for (size_t i = 0; i < text.size(); ++i) {
            char c = static_cast<char>(
                std::tolower(static_cast<unsigned char>(text[text.size() - 1 - i])));
            int v;
            if (c >= '0' && c <= '9') {
                v = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                v = c - 'a' + 10;
            } else {
                *error = std::string("invalid hex digit '") + c + "' in core mask";
                return false;
            }
            for (int b = 0; b < 4; ++b) {
                if (v & (1 << b)) {
                    bits.set(i * 4 + b);
                }
            }
        }
    } else {
        if (text.front() == '[') {
            if (text.back() != ']') {
                *error = "core list is missing its closing ']'";
                return false;
            }
            text = text.substr(1, text.size() - 2);
        }
        while (true) {
            size_t comma = text.find(',');
            std::string_view item = trim(text.substr(0, comma));
            size_t dash = item.find('-');
            uint32_t lo, hi;
            if (dash == std::string_view::npos) {
                if (!parse_uint(item, &lo)) {
                    *error = "invalid core number '" + std::string(item) + "'";
                    return false;
                }
                hi = lo;
            } else if (!parse_uint(trim(item.substr(0, dash)), &lo) ||
                       !parse_uint(trim(item.substr(dash + 1)), &hi)) {
                *error = "invalid core range '" + std::string(item) + "'";
                return false;
            }
            if (lo > hi || hi >= kMaxCores) {
                *error = "core range '" + std::string(item) + "' is reversed or out of range";
                return false;
            }
            for (uint32_t c = lo; c <= hi; ++c) {
                bits.set(c);
            }
            if (comma == std::string_view::npos) {
                break;
            }
            text.remove_prefix(comma + 1);
        }
    }
    if (bits.none()) {
        *error = "core mask selects no core";
        return false;
    }
    bits_ = bits;
    return true;
}

std::vector<uint32_t> CpuSet::cores() const {
    std::vector<uint32_t> out;
    for (uint32_t i = 0; i < kMaxCores; ++i) {
        if (bits_.test(i)) {
            out.push_back(i);
        }
    }
    return out;
}

uint32_t CpuSet::first() const {
    for (uint32_t i = 0; i < kMaxCores; ++i) {
        if (bits_.test(i)) {
            return i;
        }
    }
    return kMaxCores;
}

std::string CpuSet::to_hex() const {
    static const char kDigits[] = "0123456789abcdef";
    std::string out;
    for (int nib = kMaxCores / 4 - 1; nib >= 0; --nib) {
        int v = 0;
        for (int b = 0; b < 4; ++b) {
            if (bits_.test(nib * 4 + b)) {
                v |= 1 << b;
            }
        }
        if (v != 0 || !out.empty()) {
            out.push_back(kDigits[v]);
        }
    }
    return "0x" + (out.empty() ? std::string("0") : out);
}

std::string CpuSet::to_list() const {
    std::string out = "[";
    for (uint32_t c : cores()) {
        if (out.size() > 1) {
            out += ',';
        }
        out += std::to_string(c);
    }
    return out + "]";
}

}  // namespace flint::util
