#pragma once

// A snapshot is a directory of two files:
//
//   memory: guest RAM, region after region in address order, laid out as
//           GuestMemory::allocate() lays out its memfd (the layout in
//           ascending order), so GuestMemory::map_file() maps it as it is;
//           sparse: zero and discarded pages are holes.
//   state:  the migration stream (stream.h): header, Config, MemoryLayout,
//           State, End, each with its checksum.
//
// Both are written under temporary names and renamed, the state last: a
// directory with a state file has the memory file that goes with it, and a
// crash midway leaves either the previous snapshot or no state file.

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/sys/fd.h"

namespace vim::migration {

// Writes the snapshot of a paused machine into `directory` (created if need be).
void write_snapshot(const std::filesystem::path& directory, const vmm::memory::GuestMemory& memory,
                    const nlohmann::json& config, std::span<const std::uint8_t> state);

struct Snapshot {
    nlohmann::json config;
    std::vector<vmm::memory::RegionLayout> memory_layout;
    std::vector<std::uint8_t> state;
    // For GuestMemory::map_file(memory_layout, memory.get()); its size is checked.
    vmm::sys::Fd memory;
};

// Reads the snapshot in `directory`; throws std::runtime_error naming the file
// and what is wrong with it (missing, truncated, corrupt, too short).
Snapshot read_snapshot(const std::filesystem::path& directory);

}  // namespace vim::migration
