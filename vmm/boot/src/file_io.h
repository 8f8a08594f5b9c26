#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/sys/fd.h"

namespace vim::vmm::boot::detail {

// `what` names the file's role ("kernel", "initrd") in error messages, which
// read "<step> <what> <path>: <strerror>".
sys::Fd open_for_reading(const std::string& what, const std::string& path);
std::uint64_t file_size(const sys::Fd& fd, const std::string& what, const std::string& path);
// Reads out.size() bytes of the file from `offset` on.
void read_exact_at(const sys::Fd& fd, std::uint64_t offset, std::span<std::uint8_t> out,
                   const std::string& what, const std::string& path);
// Reads the first out.size() bytes of the file.
void read_exact(const sys::Fd& fd, std::span<std::uint8_t> out, const std::string& what,
                const std::string& path);
std::vector<std::uint8_t> read_whole_file(const std::string& what, const std::string& path);

}  // namespace vim::vmm::boot::detail
