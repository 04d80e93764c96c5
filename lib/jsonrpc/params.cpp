#include <algorithm>
#include <cstring>

#include "flint/jsonrpc/jsonrpc.h"

namespace flint::jsonrpc {

namespace {

[[noreturn]] void invalid(const char *name, const std::string &expected) {
    throw Error(kInvalidParams,
                std::string("Invalid parameter '") + name + "': expected " + expected);
}

// Only JSON integers: jsoncpp also calls an integral double (1.0, 1e3) "integral".
bool is_integer(const Json::Value &v) {
    return v.type() == Json::intValue || v.type() == Json::uintValue;
}

std::string int_expectation(int64_t min, int64_t max) {
    if (min == INT64_MIN && max == INT64_MAX) {
        return "integer";
    }
    if (min == INT64_MIN) {
        return "integer <= " + std::to_string(max);
    }
    if (max == INT64_MAX) {
        return "integer >= " + std::to_string(min);
    }
    return "integer between " + std::to_string(min) + " and " + std::to_string(max);
}

std::string uint_expectation(uint64_t max) {
    if (max == UINT64_MAX) {
        return "unsigned integer";
    }
    return "unsigned integer <= " + std::to_string(max);
}

int64_t to_int(const char *name, const Json::Value &v, int64_t min, int64_t max) {
    if (!is_integer(v) || !v.isInt64()) {
        invalid(name, int_expectation(min, max));
    }
    int64_t x = v.asInt64();
    if (x < min || x > max) {
        invalid(name, int_expectation(min, max));
    }
    return x;
}

uint64_t to_uint(const char *name, const Json::Value &v, uint64_t max) {
    if (!is_integer(v) || !v.isUInt64()) {
        invalid(name, uint_expectation(max));
    }
    uint64_t x = v.asUInt64();
    if (x > max) {
        invalid(name, uint_expectation(max));
    }
    return x;
}

}  // namespace

ParamDecoder::ParamDecoder(const Json::Value &params) : params_(params) {
    if (!params_.isNull() && !params_.isObject()) {
        throw Error(kInvalidParams, "Invalid parameters: expected an object");
    }
}

// An explicit null is a wrong type, not an absent field: strict, like SPDK's decoders.
const Json::Value *ParamDecoder::field(const char *name, bool required) {
    seen_.emplace_back(name);
    const Json::Value *v =
        params_.isObject() ? params_.find(name, name + std::strlen(name)) : nullptr;
    if (v == nullptr && required) {
        throw Error(kInvalidParams, std::string("Missing required parameter '") + name + "'");
    }
    return v;
}

std::string ParamDecoder::required_string(const char *name) {
    const Json::Value *v = field(name, true);
    if (!v->isString()) {
        invalid(name, "string");
    }
    return v->asString();
}

std::optional<std::string> ParamDecoder::optional_string(const char *name) {
    const Json::Value *v = field(name, false);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->isString()) {
        invalid(name, "string");
    }
    return v->asString();
}

int64_t ParamDecoder::required_int(const char *name, int64_t min, int64_t max) {
    return to_int(name, *field(name, true), min, max);
}

std::optional<int64_t> ParamDecoder::optional_int(const char *name, int64_t min, int64_t max) {
    const Json::Value *v = field(name, false);
    if (v == nullptr) {
        return std::nullopt;
    }
    return to_int(name, *v, min, max);
}

uint64_t ParamDecoder::required_uint(const char *name, uint64_t max) {
    return to_uint(name, *field(name, true), max);
}

std::optional<uint64_t> ParamDecoder::optional_uint(const char *name, uint64_t max) {
    const Json::Value *v = field(name, false);
    if (v == nullptr) {
        return std::nullopt;
    }
    return to_uint(name, *v, max);
}

bool ParamDecoder::required_bool(const char *name) {
    const Json::Value *v = field(name, true);
    if (!v->isBool()) {
        invalid(name, "boolean");
    }
    return v->asBool();
}

std::optional<bool> ParamDecoder::optional_bool(const char *name) {
    const Json::Value *v = field(name, false);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->isBool()) {
        invalid(name, "boolean");
    }
    return v->asBool();
}

const Json::Value *ParamDecoder::optional_value(const char *name) {
    return field(name, false);
}

void ParamDecoder::finish() {
    if (!params_.isObject()) {
        return;
    }
    for (const std::string &name : params_.getMemberNames()) {
        if (std::find(seen_.begin(), seen_.end(), name) == seen_.end()) {
            throw Error(kInvalidParams, "Unknown parameter '" + name + "'");
        }
    }
}

}  // namespace flint::jsonrpc
