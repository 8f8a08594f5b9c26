#include "controller/store/records.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "controller/store/errors.h"

namespace vim::controller::store {

std::string new_id() {
    // One generator per thread, seeded from the kernel: ids from racing requests never share a sequence.
    thread_local std::mt19937_64 generator{[] {
        std::random_device device;
        return (static_cast<std::uint64_t>(device()) << 32) ^ device();
    }()};
    // Version 7 (RFC 9562): the millisecond time leads, so ids made one after another sort together and
    // the store's id index grows at its end instead of dirtying a random page per insert.
    auto milliseconds = static_cast<std::uint64_t>(now_ms()) & 0xffffffffffffULL;
    std::uint64_t high = (milliseconds << 16) | 0x7000ULL | (generator() & 0x0fffULL);
    std::uint64_t low = (generator() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC variant
    char text[37];
    std::snprintf(text, sizeof text, "%08llx-%04llx-%04llx-%04llx-%012llx",
                  static_cast<unsigned long long>(high >> 32),
                  static_cast<unsigned long long>((high >> 16) & 0xffff),
                  static_cast<unsigned long long>(high & 0xffff), static_cast<unsigned long long>(low >> 48),
                  static_cast<unsigned long long>(low & 0xffffffffffffULL));
    return text;
}

TimeMs now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

namespace {

std::int64_t scaled(std::int64_t capacity, std::int64_t reserved, double ratio) {
    double usable = std::floor(static_cast<double>(capacity - reserved) * ratio);
    return std::max<std::int64_t>(0, static_cast<std::int64_t>(usable));
}

template <typename Enum, std::size_t N>
std::string_view name_of(Enum value, const std::array<std::string_view, N>& names) {
    return names.at(static_cast<std::size_t>(value));
}

template <typename Enum, std::size_t N>
Enum parse_name(std::string_view text, const std::array<std::string_view, N>& names, const char* what) {
    auto found = std::find(names.begin(), names.end(), text);
    if (found == names.end()) {
        throw InvalidArgumentError(std::string(what) + " \"" + std::string(text) + "\" is not valid");
    }
    return static_cast<Enum>(found - names.begin());
}

constexpr std::array<std::string_view, 2> kImageStatusNames{"uploading", "ready"};
constexpr std::array<std::string_view, 4> kGroupPolicyNames{"affinity", "anti-affinity", "soft-affinity",
                                                            "soft-anti-affinity"};
constexpr std::array<std::string_view, 10> kVmStateNames{"pending", "scheduled", "creating", "running",
                                                         "stopped", "migrating", "error",    "deleting",
                                                         "missing", "unmanaged"};
constexpr std::array<std::string_view, 4> kOperationStateNames{"pending", "running", "succeeded", "failed"};

}  // namespace

Resources usable_capacity(const Host& host) {
    return {scaled(host.capacity.vcpus, host.reserved.vcpus, host.ratios.cpu),
            scaled(host.capacity.memory_mib, host.reserved.memory_mib, host.ratios.ram),
            scaled(host.capacity.disk_gib, host.reserved.disk_gib, host.ratios.disk)};
}

Resources usable_capacity(const NumaNode& node, const OvercommitRatios& ratios) {
    return {scaled(node.vcpus, 0, ratios.cpu), scaled(node.memory_mib, 0, ratios.ram), 0};
}

std::string_view to_string(ImageStatus status) { return name_of(status, kImageStatusNames); }
std::string_view to_string(GroupPolicy policy) { return name_of(policy, kGroupPolicyNames); }
std::string_view to_string(VmState state) { return name_of(state, kVmStateNames); }
std::string_view to_string(OperationState state) { return name_of(state, kOperationStateNames); }

ImageStatus parse_image_status(std::string_view text) {
    return parse_name<ImageStatus>(text, kImageStatusNames, "image status");
}
GroupPolicy parse_group_policy(std::string_view text) {
    return parse_name<GroupPolicy>(text, kGroupPolicyNames, "server group policy");
}
VmState parse_vm_state(std::string_view text) { return parse_name<VmState>(text, kVmStateNames, "vm state"); }
OperationState parse_operation_state(std::string_view text) {
    return parse_name<OperationState>(text, kOperationStateNames, "operation state");
}

}  // namespace vim::controller::store
