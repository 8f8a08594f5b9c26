// Memory a guest gives back through the balloon, as the host sees it: the
// vmm's resident memory, with Debian's kernel and its own virtio_balloon.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "vmm_fixture.h"
#include "vmm_process.h"

namespace {

using namespace vim::testing;
using nlohmann::json;

constexpr std::int64_t kMiB = 1 << 20;

class VmmBalloon : public VmmBoot {
protected:
    std::unique_ptr<VmmProcess> boot_guest(const std::string& balloon_options = "") {
        auto arguments = boot_arguments("shell", 2, "512M");
        arguments.insert(arguments.end(), {"--api-socket", socket_path()});
        if (!balloon_options.empty()) {
            arguments.insert(arguments.end(), {"--balloon", balloon_options});
        }
        auto vmm = std::make_unique<VmmProcess>(arguments, VmmProcess::Input::Pipe);
        EXPECT_TRUE(vmm->wait_for_line("VIM-GUEST-SHELL", kBootTimeout)) << vmm->console() << vmm->errors();
        return vmm;
    }

    json balloon_stats(VmmProcess& vmm) {
        const json stats = command(vmm, "stats");
        EXPECT_TRUE(stats["ok"].get<bool>()) << stats.dump();
        return stats["devices"]["virtio-balloon0"];
    }
};

// Without free page reporting, memory the guest touched and freed stays with
// the vmm until the balloon takes it; deflating gives it back to the guest.
TEST_F(VmmBalloon, InflatingReturnsMemoryToTheHostAndDeflatingLetsTheGuestUseItAgain) {
    auto guest = boot_guest("free_page_reporting=off");
    ASSERT_FALSE(HasFailure());
    // Nearly every free page of the guest touched, then freed: all resident.
    const std::string touch_free_memory =
        "memtouch $(( $(awk '/^MemFree:/ { print $2 }' /proc/meminfo) / 1024 - 32 ))";
    ASSERT_EQ(run_in_guest(*guest, touch_free_memory).status, 0) << guest->console();
    const std::int64_t touched = guest->resident_bytes();

    json reply = command(*guest, "balloon", {{"size_mib", 128}});
    ASSERT_TRUE(reply["ok"].get<bool>()) << reply.dump();
    ASSERT_TRUE(eventually([&] { return balloon_stats(*guest)["actual_mib"] == 128; }, 60s))
        << balloon_stats(*guest).dump();
    const std::int64_t inflated = guest->resident_bytes();
    EXPECT_GE(touched - inflated, 110 * kMiB)
        << "resident " << touched / kMiB << " -> " << inflated / kMiB << " MiB";
    EXPECT_LE(touched - inflated, 140 * kMiB)
        << "resident " << touched / kMiB << " -> " << inflated / kMiB << " MiB";

    reply = command(*guest, "balloon", {{"size_mib", 0}});
    ASSERT_TRUE(reply["ok"].get<bool>()) << reply.dump();
    ASSERT_TRUE(eventually([&] { return balloon_stats(*guest)["actual_mib"] == 0; }, 60s))
        << balloon_stats(*guest).dump();
    ASSERT_EQ(run_in_guest(*guest, touch_free_memory).status, 0) << guest->console();
    EXPECT_GE(guest->resident_bytes() - inflated, 100 * kMiB) << "the guest did not get its memory back";
}

// With free page reporting (the default) the host gets back what the guest
// frees within seconds, and nobody asks for it.
TEST_F(VmmBalloon, MemoryTheGuestFreesReturnsToTheHostWithoutACommand) {
    auto guest = boot_guest();
    ASSERT_FALSE(HasFailure());
    guest->type("memtouch 200 hold &\n");
    ASSERT_TRUE(guest->wait_for_line("memtouch: touched 200 MiB", 120s)) << guest->console();
    const std::int64_t holding = guest->resident_bytes();

    ASSERT_EQ(run_in_guest(*guest, "killall memtouch").status, 0) << guest->console();
    EXPECT_TRUE(eventually([&] { return holding - guest->resident_bytes() >= 150 * kMiB; }, 30s))
        << "resident " << holding / kMiB << " -> " << guest->resident_bytes() / kMiB << " MiB";
    EXPECT_GE(balloon_stats(*guest)["reported_bytes"].get<std::int64_t>(), 150 * kMiB)
        << balloon_stats(*guest).dump();
}

}  // namespace
