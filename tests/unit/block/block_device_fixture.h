#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "block_test_support.h"
#include "vim/testing/guest_ram.h"
#include "vim/testing/recording_interrupt.h"
#include "vim/testing/temp_dir.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/block/block_device.h"

namespace vim::vmm::virtio::block::testing {

// What a block device test plays the guest with, once per engine (the parameter, "io_uring" or "sync"; an
// io_uring run is skipped where io_uring cannot be used): guest RAM holding queue 0's rings and, after
// them, the buffers the driver lays out; the queue's notification eventfd, the event loop serving it and
// a recording interrupt. The disk is a file in a fresh directory. TearDown resets and destroys the
// device, so whatever a derived fixture gave it (engine hooks) outlives it.
class BlockDeviceFixture : public ::testing::TestWithParam<std::string> {
protected:
    static constexpr std::uint16_t kSize = BlockDevice::kQueueSize;
    static constexpr memory::GuestAddress kRam = 0x100000;
    static constexpr std::uint64_t kRamSize = 8 << 20;
    static constexpr memory::GuestAddress kData = kRam + 0x4000;  // after the rings

    void SetUp() override {
        if (GetParam() == "io_uring") {
            if (const auto reason = io_uring_unavailable()) {
                GTEST_SKIP() << *reason;
            }
        }
    }

    void TearDown() override {
        if (device) {
            device->reset();
            device.reset();
        }
    }

    // Lays out queue 0 in guest RAM and activates the device on it.
    void activate() {
        driver.configure(queues[0]);
        device->activate(
            Activation{ram.memory(), loop, device->device_features(), queues, notification_fds, interrupt});
    }

    vim::testing::TempDir directory;
    const std::string disk_path = directory.path("disk.raw");
    vim::testing::GuestRam ram{kRam, kRamSize};
    vim::testing::VirtqueueDriver driver{ram.memory(), kSize, vim::testing::RingLayout::packed(kRam, kSize),
                                         kData, kRam + kRamSize - kData};
    std::array<Queue, 1> queues{Queue{"virtio-blk0 queue 0", kSize}};
    sys::EventFd notification{"virtio-blk test notification"};
    std::array<int, 1> notification_fds{notification.get()};
    sys::EventLoop loop;
    vim::testing::RecordingInterrupt interrupt;
    std::unique_ptr<BlockDevice> device;
};

// Names the instantiations of a BlockDeviceFixture suite by their engine.
inline std::string engine_name(const ::testing::TestParamInfo<std::string>& info) {
    return info.param == "io_uring" ? "IoUring" : "Sync";
}

}  // namespace vim::vmm::virtio::block::testing
