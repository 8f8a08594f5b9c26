// A real distribution on a virtio disk: Debian 12 (made by
// tests/guest/build-debian-image.sh) boots from /dev/vda with its own initrd
// to systemd's multi-user target and a login on ttyS0, and powers off
// cleanly, leaving a clean filesystem behind.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "vmm_fixture.h"
#include "vmm_process.h"

namespace {

using namespace vim::testing;

// Where build-debian-image.sh leaves the image by default (scripts/test.sh builds it).
std::string debian_image_dir() {
    const char* dir = std::getenv("VIM_DEBIAN_IMAGE_DIR");
    return dir ? dir : "/var/cache/vim-tests/debian-12";
}

TEST_F(VmmBoot, DebianBootsFromItsDiskToALoginAndPowersOff) {
    const std::string image_dir = debian_image_dir();
    if (!std::filesystem::exists(image_dir + "/debian.raw")) {
        GTEST_SKIP() << "no Debian image in " << image_dir << " (tests/guest/build-debian-image.sh makes it)";
    }
    // A copy: the guest writes its root filesystem, and the cached image stays as built.
    const std::string disk = directory_ + "/debian.raw";
    ASSERT_EQ(std::system(("cp --sparse=always " + image_dir + "/debian.raw " + disk).c_str()), 0);

    VmmProcess vmm({"--kernel", image_dir + "/vmlinuz", "--initrd", image_dir + "/initrd.img", "--cpus", "2",
                    "--memory", "1G", "--cmdline", "console=ttyS0 root=/dev/vda rw reboot=k panic=1",
                    "--disk", "path=" + disk, "--api-socket", socket_path()},
                   VmmProcess::Input::Pipe);
    // The distribution's getty logs root in on the serial console.
    ASSERT_TRUE(vmm.wait_for_line("login:", 2 * kBootTimeout)) << vmm.console() << vmm.errors();
    ASSERT_TRUE(vmm.wait_for_line("VIM-DEBIAN-READY", 60s)) << vmm.console() << vmm.errors();
    vmm.type("printf 'target-%s=%s\\n' multi-user $(systemctl is-active multi-user.target)\n");
    auto target = vmm.wait_for_line("target-multi-user=", 120s);
    ASSERT_TRUE(target) << vmm.console();
    EXPECT_EQ(value_after(*target, "target-multi-user="), "active") << vmm.console();

    vmm.type("systemctl poweroff\n");
    EXPECT_EQ(vmm.wait_exit(120s), 0) << vmm.console() << vmm.errors();
    const std::string check = "e2fsck -fn " + disk + " >/dev/null 2>&1";
    EXPECT_EQ(std::system(check.c_str()), 0) << "the root filesystem is not clean after the power-off";
}

}  // namespace
