#pragma once

// The state a part of the machine carries across a snapshot or a live
// migration, and the one interface every part with state implements.
//
// A state is a JSON value (travelling as CBOR): named fields, so a reader
// can say which one is missing or wrong, and raw kernel structures as binary
// values. Everything restore() reads came off a file or a socket and may be
// hostile: it is checked, and a bad value is a StateError naming the part and
// the field, never a crash or an access outside guest RAM.

#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace vim::vmm::state {

using State = nlohmann::json;

// A saved state that cannot be restored: "virtio-blk0: queue 1: size: 300 is not a power of two".
class StateError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Pause (quiesce), save, restore. The machine calls them with its vCPUs
// paused; devices on the event loop are called on its thread.
class Stateful {
public:
    virtual ~Stateful() = default;
    // Finishes the work in flight (a disk's requests) so that save() sees it done.
    virtual void quiesce() {}
    virtual State save() const = 0;
    // Takes a state save() made, on an object built from the same
    // configuration; throws StateError for one it cannot take.
    virtual void restore(const State& state) = 0;
};

// Field `name` of object `state`; throws StateError("<name>: missing") or
// ("<name>: not a ...") naming it.
const State& field(const State& state, const char* name);

// An unsigned integer field no larger than T's maximum.
template <typename T>
T unsigned_field(const State& state, const char* name) {
    static_assert(std::is_unsigned_v<T> || std::is_same_v<T, bool>);
    const State& value = field(state, name);
    if constexpr (std::is_same_v<T, bool>) {
        if (!value.is_boolean()) {
            throw StateError(std::string(name) + ": not a boolean");
        }
        return value.get<bool>();
    } else {
        // A non-negative signed integer counts too: what a C++ int assigned
        // to a State becomes.
        const bool non_negative =
            value.is_number_unsigned() || (value.is_number_integer() && value.get<std::int64_t>() >= 0);
        if (!non_negative || value.get<std::uint64_t>() > std::numeric_limits<T>::max()) {
            throw StateError(std::string(name) + ": not an unsigned integer of at most " +
                             std::to_string(std::numeric_limits<T>::max()));
        }
        return static_cast<T>(value.get<std::uint64_t>());
    }
}

// A binary field (a kernel structure, a register file).
const std::vector<std::uint8_t>& binary_field(const State& state, const char* name);
// A binary field of at most `max_size` bytes (a FIFO, a queue of bytes).
const std::vector<std::uint8_t>& binary_field(const State& state, const char* name, std::size_t max_size);

// Copies a binary field of exactly `out.size()` bytes into `out` (a device's
// RAM, a register block).
void bytes_field(const State& state, const char* name, std::span<std::uint8_t> out);

// Copies a binary field of exactly sizeof(T) bytes into a T.
template <typename T>
T struct_field(const State& state, const char* name) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto& bytes = binary_field(state, name);
    if (bytes.size() != sizeof(T)) {
        throw StateError(std::string(name) + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                         std::to_string(sizeof(T)));
    }
    T value;
    std::memcpy(&value, bytes.data(), sizeof(T));
    return value;
}

// A trivially copyable value as a binary State.
template <typename T>
State binary(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(&value);
    return State::binary(std::vector<std::uint8_t>(bytes, bytes + sizeof(T)));
}
inline State binary(std::span<const std::uint8_t> bytes) {
    return State::binary(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
}
inline State binary(const std::vector<std::uint8_t>& bytes) { return State::binary(bytes); }

// Runs `restore`, prefixing a StateError (or a nlohmann error from a
// mistyped value) with `part`: "serial: lcr: not an unsigned integer ...".
template <typename Restore>
void restoring(const std::string& part, Restore&& restore) {
    try {
        restore();
    } catch (const StateError& error) {
        throw StateError(part + ": " + error.what());
    } catch (const nlohmann::json::exception& error) {
        throw StateError(part + ": " + error.what());
    }
}

}  // namespace vim::vmm::state
