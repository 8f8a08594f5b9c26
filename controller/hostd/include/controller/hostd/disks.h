#pragma once

#include <cstdint>
#include <filesystem>

namespace vim::controller::hostd {

// Makes target a copy of source that shares its blocks (FICLONE) where the filesystem allows, else a
// sparse copy (zero blocks become holes). Written under a temporary name and renamed, so target is never
// seen half made. Throws std::system_error naming the file and the step.
void clone_file(const std::filesystem::path& source, const std::filesystem::path& target);

// A file of size_bytes that takes no space until written. Throws std::system_error naming the file.
void create_sparse_file(const std::filesystem::path& path, std::uint64_t size_bytes);

}  // namespace vim::controller::hostd
