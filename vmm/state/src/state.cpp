#include "vmm/state/state.h"

namespace vim::vmm::state {

const State& field(const State& state, const char* name) {
    if (!state.is_object()) {
        throw StateError(std::string("not an object where ") + name + " was expected");
    }
    auto found = state.find(name);
    if (found == state.end()) {
        throw StateError(std::string(name) + ": missing");
    }
    return *found;
}

const std::vector<std::uint8_t>& binary_field(const State& state, const char* name) {
    const State& value = field(state, name);
    if (!value.is_binary()) {
        throw StateError(std::string(name) + ": not binary data");
    }
    return value.get_binary();
}

const std::vector<std::uint8_t>& binary_field(const State& state, const char* name, std::size_t max_size) {
    const auto& bytes = binary_field(state, name);
    if (bytes.size() > max_size) {
        throw StateError(std::string(name) + ": " + std::to_string(bytes.size()) + " bytes, at most " +
                         std::to_string(max_size) + " expected");
    }
    return bytes;
}

void bytes_field(const State& state, const char* name, std::span<std::uint8_t> out) {
    const auto& bytes = binary_field(state, name);
    if (bytes.size() != out.size()) {
        throw StateError(std::string(name) + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                         std::to_string(out.size()));
    }
    std::memcpy(out.data(), bytes.data(), out.size());
}

}  // namespace vim::vmm::state
