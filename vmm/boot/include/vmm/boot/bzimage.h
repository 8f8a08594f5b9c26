#pragma once

// A Linux bzImage as distributions ship it: the real-mode setup code with the
// setup header, followed by the protected-mode kernel (Documentation/x86/boot.rst).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vim::vmm::boot {

// loadflags bits.
inline constexpr std::uint8_t kLoadedHigh = 0x01;
inline constexpr std::uint8_t kCanUseHeap = 0x80;
// xloadflags bit: the kernel has the 64-bit entry point at load address + 0x200.
inline constexpr std::uint16_t kXlfKernel64 = 0x0001;
inline constexpr std::uint64_t k64BitEntryOffset = 0x200;
// The oldest protocol with the fields a 64-bit loader needs (2.12: xloadflags).
inline constexpr std::uint16_t kMinimumBootProtocol = 0x020c;

// The setup header fields a loader needs, decoded.
struct SetupHeader {
    std::uint16_t protocol_version;  // 0x020f is protocol 2.15
    std::uint32_t setup_sects;       // a 0 in the file already reads as 4
    std::uint8_t loadflags;
    std::uint16_t xloadflags;
    std::uint32_t kernel_alignment;
    bool relocatable;
    std::uint64_t pref_address;
    std::uint32_t init_size;        // memory the kernel needs from its runtime start
    std::uint32_t initrd_addr_max;  // highest address the initrd may occupy
    std::uint32_t cmdline_size;     // longest command line, without its NUL
};

class BzImage {
public:
    // `name` (usually the path) starts every error message. Throws
    // std::invalid_argument naming what is wrong with the image.
    static BzImage parse(std::vector<std::uint8_t> bytes, std::string name);
    // Also throws std::system_error if the file cannot be opened or read.
    static BzImage read(const std::string& path);

    const std::string& name() const noexcept { return name_; }
    const SetupHeader& header() const noexcept { return header_; }
    // File offset of the protected-mode kernel: (setup_sects + 1) * 512.
    std::uint64_t kernel_offset() const noexcept;
    // The protected-mode kernel, which is loaded at layout::kKernelLoadAddress.
    std::span<const std::uint8_t> kernel() const noexcept;
    // The compressed kernel inside kernel(): the vmlinux ELF file, then the
    // kernel's relocation table, compressed as one stream.
    std::span<const std::uint8_t> payload() const noexcept;
    // The setup header as the file has it, from 0x1f1 to its end (0x202 plus
    // the byte at 0x201): what boot_params starts from.
    std::span<const std::uint8_t> setup_header_bytes() const noexcept;

private:
    BzImage() = default;

    std::string name_;
    std::vector<std::uint8_t> bytes_;
    SetupHeader header_{};
    std::uint64_t kernel_size_ = 0;
    std::uint64_t payload_offset_ = 0;  // within kernel()
    std::uint64_t payload_length_ = 0;
    std::uint64_t header_end_ = 0;
};

}  // namespace vim::vmm::boot
