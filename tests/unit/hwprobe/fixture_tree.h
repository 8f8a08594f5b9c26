#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "fake_cpuid.h"
#include "hwprobe/probe.h"

namespace vim::hwprobe::testing {

inline std::filesystem::path fixture_path(const std::string& name) {
    return std::filesystem::path(VIM_HWPROBE_FIXTURES) / name;
}

// A private copy of a fixture host (fixtures/<name>/{sys,proc}) that a test may
// damage; removed with the object. /dev is an empty directory: no KVM, no vhost-net.
class FixtureTree {
public:
    explicit FixtureTree(const std::string& fixture) {
        std::string pattern = (std::filesystem::temp_directory_path() / "hwprobe-fixture-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp " + pattern);
        }
        root_ = pattern;
        std::filesystem::copy(
            fixture_path(fixture), root_,
            std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
        std::filesystem::create_directories(root_ / "dev");
    }
    FixtureTree(const FixtureTree&) = delete;
    FixtureTree& operator=(const FixtureTree&) = delete;
    ~FixtureTree() {
        std::error_code ignored;
        std::filesystem::remove_all(root_, ignored);
    }

    const std::filesystem::path& root() const { return root_; }
    std::filesystem::path path(const std::string& relative) const { return root_ / relative; }

    void write(const std::string& relative, const std::string& content) const {
        std::filesystem::create_directories(path(relative).parent_path());
        std::ofstream(path(relative), std::ios::binary | std::ios::trunc) << content;
    }
    void remove(const std::string& relative) const { std::filesystem::remove_all(path(relative)); }

    ProbeOptions options(const FakeCpuid& cpu = xeon_gold_6338()) const {
        ProbeOptions options;
        options.sysfs_root = root_ / "sys";
        options.procfs_root = root_ / "proc";
        options.dev_root = root_ / "dev";
        options.cpuid = cpu.function();
        return options;
    }

private:
    std::filesystem::path root_;
};

}  // namespace vim::hwprobe::testing
