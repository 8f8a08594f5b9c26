#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "hwprobe/probe.h"

// This machine, read through the real /sys, /proc and /dev, against what the
// kernel itself says in /proc/cpuinfo and /proc/meminfo.
namespace vim::hwprobe {
namespace {

std::string describe(const std::vector<Warning>& warnings) {
    std::string text;
    for (const Warning& warning : warnings) {
        text += warning.file + ": " + warning.problem + "\n";
    }
    return text;
}

// Each "key : value" of /proc/cpuinfo's first processor, and the number of processors.
struct KernelCpuinfo {
    std::map<std::string, std::string> first;
    unsigned processors = 0;
};

KernelCpuinfo kernel_cpuinfo() {
    KernelCpuinfo cpuinfo;
    std::ifstream file("/proc/cpuinfo");
    for (std::string line; std::getline(file, line);) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) {
            continue;
        }
        std::string key = line.substr(0, colon);
        key.erase(key.find_last_not_of(" \t") + 1);
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        if (key == "processor") {
            ++cpuinfo.processors;
        }
        if (cpuinfo.processors == 1) {
            cpuinfo.first.emplace(key, value);
        }
    }
    return cpuinfo;
}

std::uint64_t meminfo_kib(const std::string& key) {
    std::ifstream file("/proc/meminfo");
    for (std::string name, unit; file >> name;) {
        std::uint64_t value = 0;
        file >> value;
        std::getline(file, unit);
        if (name == key + ":") {
            return value;
        }
    }
    ADD_FAILURE() << "no " << key << " in /proc/meminfo";
    return 0;
}

class ThisHost : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        ProbeOptions options;
        options.state_directory = std::filesystem::temp_directory_path();
        inventory_ = new Inventory(probe(options));
    }
    static void TearDownTestSuite() { delete inventory_; }

    static Inventory* inventory_;
    const Inventory& inventory = *inventory_;
    const KernelCpuinfo cpuinfo = kernel_cpuinfo();
};

Inventory* ThisHost::inventory_ = nullptr;

TEST_F(ThisHost, ReadsEverythingWithoutWarnings) {
    EXPECT_TRUE(inventory.warnings.empty()) << describe(inventory.warnings);
}

TEST_F(ThisHost, CountsTheProcessorsTheKernelLists) {
    EXPECT_EQ(inventory.cpu.threads, cpuinfo.processors);
    EXPECT_EQ(inventory.cpu.online.size(), cpuinfo.processors);
    EXPECT_EQ(inventory.cpu.threads, static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN)));
}

TEST_F(ThisHost, DecodesCpuidAsTheKernelDoes) {
    EXPECT_EQ(inventory.cpu.vendor, cpuinfo.first.at("vendor_id"));
    EXPECT_EQ(std::to_string(inventory.cpu.family), cpuinfo.first.at("cpu family"));
    EXPECT_EQ(std::to_string(inventory.cpu.model), cpuinfo.first.at("model"));
    EXPECT_EQ(std::to_string(inventory.cpu.stepping), cpuinfo.first.at("stepping"));
    std::set<std::string> flags;
    std::istringstream words(cpuinfo.first.at("flags"));
    for (std::string word; words >> word;) {
        flags.insert(word);
    }
    // Flags the kernel shows under the same name and does not turn off by itself. Not the
    // model name nor x2apic: under PVM, CPUID in user mode reaches the outer hypervisor,
    // whose brand string and x2APIC differ from what the guest kernel was shown.
    for (const char* feature : {"sse2", "avx", "avx2", "aes", "avx512f", "avx512bw", "avx512dq", "avx512vl",
                                "rdrand", "rdseed", "hypervisor", "vmx", "svm", "pclmulqdq"}) {
        const bool reported =
            std::count(inventory.cpu.features.begin(), inventory.cpu.features.end(), feature);
        EXPECT_EQ(reported, flags.count(feature) == 1) << feature;
    }
}

TEST_F(ThisHost, ReadsTheMemoryTheKernelReports) {
    EXPECT_EQ(inventory.memory.total_bytes, meminfo_kib("MemTotal") * 1024);
    ASSERT_TRUE(inventory.memory.available_bytes);
    EXPECT_LE(*inventory.memory.available_bytes, *inventory.memory.total_bytes);
}

TEST_F(ThisHost, ReportsKvmPresentExactlyWhenItOpens) {
    const bool opens = ::access("/dev/kvm", R_OK | W_OK) == 0;
    EXPECT_EQ(inventory.kvm.present, opens) << inventory.kvm.absence_detail;
    EXPECT_EQ(inventory.kvm.absence.has_value(), !opens);
    if (!opens) {
        EXPECT_FALSE(inventory.kvm.absence_detail.empty());
    }
}

TEST_F(ThisHost, SeesTheLoopbackInterface) {
    const auto loopback = std::find_if(inventory.nics.begin(), inventory.nics.end(),
                                       [](const Nic& nic) { return nic.name == "lo"; });
    ASSERT_NE(loopback, inventory.nics.end());
    EXPECT_EQ(loopback->kind, "");
    EXPECT_EQ(loopback->index, 1);
}

TEST_F(ThisHost, ReadsTheKernelRelease) {
    std::ifstream release("/proc/sys/kernel/osrelease");
    std::string expected;
    std::getline(release, expected);
    EXPECT_EQ(inventory.kernel.release, expected);
}

}  // namespace
}  // namespace vim::hwprobe
