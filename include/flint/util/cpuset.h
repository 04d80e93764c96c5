#pragma once
// A set of CPU cores, parsed from SPDK's core mask forms.

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flint::util {

class CpuSet {
public:
    static constexpr uint32_t kMaxCores = 1024;

    // Accepts a hex mask ("0x3", "3"), a bracketed list ("[0,1]", "[0-3,6]") or a bare
    // list/range ("0-1", "0,2"). On failure returns false and sets *error to the reason.
    bool parse(std::string_view text, std::string *error);

    void set(uint32_t core, bool on = true) { bits_.set(core, on); }
    bool contains(uint32_t core) const { return core < kMaxCores && bits_.test(core); }
    uint32_t count() const { return static_cast<uint32_t>(bits_.count()); }
    bool empty() const { return bits_.none(); }
    std::vector<uint32_t> cores() const;
    // Lowest core in the set; kMaxCores when empty.
    uint32_t first() const;
    // Hex mask without leading zeroes, e.g. "0x3". "0x0" when empty.
    std::string to_hex() const;
    // List form, e.g. "[0,1]".
    std::string to_list() const;

    bool operator==(const CpuSet &o) const { return bits_ == o.bits_; }

private:
    std::bitset<kMaxCores> bits_;
};

}  // namespace flint::util
