#include <cpuid.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "sections.h"

namespace vim::hwprobe {

CpuidRegisters host_cpuid(std::uint32_t leaf, std::uint32_t subleaf) {
    CpuidRegisters registers;
    // __get_cpuid_count would refuse the hypervisor leaves (0x4000xxxx), which
    // lie above the basic range it checks against; callers check the ranges.
    __cpuid_count(leaf, subleaf, registers.eax, registers.ebx, registers.ecx, registers.edx);
    return registers;
}

namespace detail {
namespace {

enum class Register { eax, ebx, ecx, edx };

struct FeatureBit {
    std::uint32_t leaf;
    std::uint32_t subleaf;
    Register reg;
    std::uint32_t bit;
    const char* name;
};

constexpr std::uint32_t kExtendedLeaves = 0x80000000;
constexpr std::uint32_t kHypervisorLeaves = 0x40000000;
constexpr std::uint32_t kHypervisorTimingLeaf = 0x40000010;

// The bits a controller compares when it picks a CPU model every host of a
// migration pool can run, plus those that say what a host can virtualize.
// Names are Linux's /proc/cpuinfo flags, except invtsc (QEMU's name; Linux
// shows it as constant_tsc + nonstop_tsc).
constexpr FeatureBit kFeatureBits[] = {
    {0x1, 0, Register::edx, 0, "fpu"},
    {0x1, 0, Register::edx, 4, "tsc"},
    {0x1, 0, Register::edx, 5, "msr"},
    {0x1, 0, Register::edx, 6, "pae"},
    {0x1, 0, Register::edx, 8, "cx8"},
    {0x1, 0, Register::edx, 9, "apic"},
    {0x1, 0, Register::edx, 13, "pge"},
    {0x1, 0, Register::edx, 15, "cmov"},
    {0x1, 0, Register::edx, 16, "pat"},
    {0x1, 0, Register::edx, 19, "clflush"},
    {0x1, 0, Register::edx, 23, "mmx"},
    {0x1, 0, Register::edx, 24, "fxsr"},
    {0x1, 0, Register::edx, 25, "sse"},
    {0x1, 0, Register::edx, 26, "sse2"},
    {0x1, 0, Register::edx, 28, "ht"},
    {0x1, 0, Register::ecx, 0, "pni"},
    {0x1, 0, Register::ecx, 1, "pclmulqdq"},
    {0x1, 0, Register::ecx, 3, "monitor"},
    {0x1, 0, Register::ecx, 5, "vmx"},
    {0x1, 0, Register::ecx, 9, "ssse3"},
    {0x1, 0, Register::ecx, 12, "fma"},
    {0x1, 0, Register::ecx, 13, "cx16"},
    {0x1, 0, Register::ecx, 17, "pcid"},
    {0x1, 0, Register::ecx, 19, "sse4_1"},
    {0x1, 0, Register::ecx, 20, "sse4_2"},
    {0x1, 0, Register::ecx, 21, "x2apic"},
    {0x1, 0, Register::ecx, 22, "movbe"},
    {0x1, 0, Register::ecx, 23, "popcnt"},
    {0x1, 0, Register::ecx, 24, "tsc_deadline_timer"},
    {0x1, 0, Register::ecx, 25, "aes"},
    {0x1, 0, Register::ecx, 26, "xsave"},
    {0x1, 0, Register::ecx, 28, "avx"},
    {0x1, 0, Register::ecx, 29, "f16c"},
    {0x1, 0, Register::ecx, 30, "rdrand"},
    {0x1, 0, Register::ecx, 31, "hypervisor"},
    {0x7, 0, Register::ebx, 0, "fsgsbase"},
    {0x7, 0, Register::ebx, 3, "bmi1"},
    {0x7, 0, Register::ebx, 4, "hle"},
    {0x7, 0, Register::ebx, 5, "avx2"},
    {0x7, 0, Register::ebx, 7, "smep"},
    {0x7, 0, Register::ebx, 8, "bmi2"},
    {0x7, 0, Register::ebx, 9, "erms"},
    {0x7, 0, Register::ebx, 10, "invpcid"},
    {0x7, 0, Register::ebx, 11, "rtm"},
    {0x7, 0, Register::ebx, 16, "avx512f"},
    {0x7, 0, Register::ebx, 17, "avx512dq"},
    {0x7, 0, Register::ebx, 18, "rdseed"},
    {0x7, 0, Register::ebx, 19, "adx"},
    {0x7, 0, Register::ebx, 20, "smap"},
    {0x7, 0, Register::ebx, 21, "avx512ifma"},
    {0x7, 0, Register::ebx, 23, "clflushopt"},
    {0x7, 0, Register::ebx, 24, "clwb"},
    {0x7, 0, Register::ebx, 26, "avx512pf"},
    {0x7, 0, Register::ebx, 27, "avx512er"},
    {0x7, 0, Register::ebx, 28, "avx512cd"},
    {0x7, 0, Register::ebx, 29, "sha_ni"},
    {0x7, 0, Register::ebx, 30, "avx512bw"},
    {0x7, 0, Register::ebx, 31, "avx512vl"},
    {0x7, 0, Register::ecx, 1, "avx512vbmi"},
    {0x7, 0, Register::ecx, 2, "umip"},
    {0x7, 0, Register::ecx, 3, "pku"},
    {0x7, 0, Register::ecx, 5, "waitpkg"},
    {0x7, 0, Register::ecx, 6, "avx512_vbmi2"},
    {0x7, 0, Register::ecx, 8, "gfni"},
    {0x7, 0, Register::ecx, 9, "vaes"},
    {0x7, 0, Register::ecx, 10, "vpclmulqdq"},
    {0x7, 0, Register::ecx, 11, "avx512_vnni"},
    {0x7, 0, Register::ecx, 12, "avx512_bitalg"},
    {0x7, 0, Register::ecx, 14, "avx512_vpopcntdq"},
    {0x7, 0, Register::ecx, 16, "la57"},
    {0x7, 0, Register::ecx, 22, "rdpid"},
    {0x7, 0, Register::ecx, 25, "cldemote"},
    {0x7, 0, Register::ecx, 27, "movdiri"},
    {0x7, 0, Register::ecx, 28, "movdir64b"},
    {0x7, 0, Register::edx, 2, "avx512_4vnniw"},
    {0x7, 0, Register::edx, 3, "avx512_4fmaps"},
    {0x7, 0, Register::edx, 4, "fsrm"},
    {0x7, 0, Register::edx, 8, "avx512_vp2intersect"},
    {0x7, 0, Register::edx, 10, "md_clear"},
    {0x7, 0, Register::edx, 14, "serialize"},
    {0x7, 0, Register::edx, 16, "tsxldtrk"},
    {0x7, 0, Register::edx, 22, "amx_bf16"},
    {0x7, 0, Register::edx, 23, "avx512_fp16"},
    {0x7, 0, Register::edx, 24, "amx_tile"},
    {0x7, 0, Register::edx, 25, "amx_int8"},
    {0x7, 0, Register::edx, 26, "spec_ctrl"},
    {0x7, 0, Register::edx, 27, "stibp"},
    {0x7, 0, Register::edx, 28, "flush_l1d"},
    {0x7, 0, Register::edx, 29, "arch_capabilities"},
    {0x7, 0, Register::edx, 31, "ssbd"},
    {0x7, 1, Register::eax, 4, "avx_vnni"},
    {0x7, 1, Register::eax, 5, "avx512_bf16"},
    {0xd, 1, Register::eax, 0, "xsaveopt"},
    {0xd, 1, Register::eax, 1, "xsavec"},
    {0xd, 1, Register::eax, 2, "xgetbv1"},
    {0xd, 1, Register::eax, 3, "xsaves"},
    {0x80000001, 0, Register::ecx, 0, "lahf_lm"},
    {0x80000001, 0, Register::ecx, 2, "svm"},
    {0x80000001, 0, Register::ecx, 4, "cr8_legacy"},
    {0x80000001, 0, Register::ecx, 5, "abm"},
    {0x80000001, 0, Register::ecx, 6, "sse4a"},
    {0x80000001, 0, Register::ecx, 7, "misalignsse"},
    {0x80000001, 0, Register::ecx, 8, "3dnowprefetch"},
    {0x80000001, 0, Register::ecx, 11, "xop"},
    {0x80000001, 0, Register::ecx, 16, "fma4"},
    {0x80000001, 0, Register::ecx, 21, "tbm"},
    {0x80000001, 0, Register::ecx, 22, "topoext"},
    {0x80000001, 0, Register::edx, 11, "syscall"},
    {0x80000001, 0, Register::edx, 20, "nx"},
    {0x80000001, 0, Register::edx, 22, "mmxext"},
    {0x80000001, 0, Register::edx, 26, "pdpe1gb"},
    {0x80000001, 0, Register::edx, 27, "rdtscp"},
    {0x80000001, 0, Register::edx, 29, "lm"},
    {0x80000007, 0, Register::edx, 8, "invtsc"},
    {0x80000008, 0, Register::ebx, 0, "clzero"},
    {0x80000008, 0, Register::ebx, 9, "wbnoinvd"},
    {0x80000008, 0, Register::ebx, 24, "amd_ssbd"},
    {0x80000008, 0, Register::ebx, 25, "virt_ssbd"},
    {0x8000000a, 0, Register::edx, 0, "npt"},
    {0x8000000a, 0, Register::edx, 3, "nrip_save"},
    {0x8000000a, 0, Register::edx, 4, "tsc_scale"},
    {0x8000000a, 0, Register::edx, 5, "vmcb_clean"},
    {0x8000000a, 0, Register::edx, 7, "decodeassists"},
    {0x8000000a, 0, Register::edx, 10, "pausefilter"},
    {0x8000000a, 0, Register::edx, 13, "avic"},
    {0x8000000a, 0, Register::edx, 15, "v_vmsave_vmload"},
    {0x8000000a, 0, Register::edx, 16, "vgif"},
};

std::uint32_t value_of(const CpuidRegisters& registers, Register reg) {
    switch (reg) {
    case Register::eax:
        return registers.eax;
    case Register::ebx:
        return registers.ebx;
    case Register::ecx:
        return registers.ecx;
    case Register::edx:
        return registers.edx;
    }
    return 0;
}

// Queries each leaf once (CPUID traps to the hypervisor in a VM) and answers
// zeros for leaves beyond the CPU's ranges, where real CPUs repeat the highest
// basic leaf instead.
class CpuidReader {
public:
    explicit CpuidReader(const CpuidFunction& cpuid)
        : cpuid_(cpuid), max_basic_(cpuid(0, 0).eax), max_extended_(cpuid(kExtendedLeaves, 0).eax) {}

    CpuidRegisters operator()(std::uint32_t leaf, std::uint32_t subleaf) {
        if (!in_range(leaf)) {
            return {};
        }
        const auto key = std::make_pair(leaf, subleaf);
        auto found = cache_.find(key);
        if (found == cache_.end()) {
            found = cache_.emplace(key, cpuid_(leaf, subleaf)).first;
        }
        return found->second;
    }

    bool in_range(std::uint32_t leaf) const {
        if (leaf >= kExtendedLeaves) {
            return leaf <= max_extended_;
        }
        if (leaf >= kHypervisorLeaves) {
            return hypervisor_max_ != 0 && leaf <= hypervisor_max_;
        }
        return leaf <= max_basic_;
    }

    // The hypervisor leaves exist only where leaf 0x1 ECX[31] says a hypervisor is present.
    std::uint32_t open_hypervisor_leaves() {
        if ((operator()(0x1, 0).ecx >> 31) & 1) {
            const std::uint32_t max = cpuid_(kHypervisorLeaves, 0).eax;
            hypervisor_max_ = max >= kHypervisorLeaves ? max : kHypervisorLeaves;
        }
        return hypervisor_max_;
    }

private:
    const CpuidFunction& cpuid_;
    std::uint32_t max_basic_;
    std::uint32_t max_extended_;
    std::uint32_t hypervisor_max_ = 0;
    std::map<std::pair<std::uint32_t, std::uint32_t>, CpuidRegisters> cache_;
};

std::vector<std::string> decode_features(CpuidReader& cpuid) {
    std::vector<std::string> names;
    for (const FeatureBit& feature : kFeatureBits) {
        if (feature.leaf == 0x7 && feature.subleaf > 0 && cpuid(0x7, 0).eax < feature.subleaf) {
            continue;
        }
        if ((value_of(cpuid(feature.leaf, feature.subleaf), feature.reg) >> feature.bit) & 1) {
            names.emplace_back(feature.name);
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

// The ASCII that CPUID packs into registers, up to the first NUL.
std::string registers_text(std::initializer_list<std::uint32_t> registers) {
    std::string text;
    for (std::uint32_t value : registers) {
        char bytes[4];
        std::memcpy(bytes, &value, sizeof(bytes));
        text.append(bytes, sizeof(bytes));
    }
    text.erase(std::find(text.begin(), text.end(), '\0'), text.end());
    return text;
}

std::string brand_string(CpuidReader& cpuid) {
    std::string brand;
    for (std::uint32_t leaf = 0x80000002; leaf <= 0x80000004; ++leaf) {
        if (!cpuid.in_range(leaf)) {
            return {};
        }
        const CpuidRegisters registers = cpuid(leaf, 0);
        char bytes[sizeof(registers)];
        std::memcpy(bytes, &registers, sizeof(bytes));
        brand.append(bytes, sizeof(bytes));
    }
    brand.erase(std::find(brand.begin(), brand.end(), '\0'), brand.end());
    return std::string(trim(brand));
}

// The first processor's "key : value" lines of /proc/cpuinfo; the others repeat them.
std::map<std::string, std::string> first_processor(HostFiles& files) {
    std::map<std::string, std::string> fields;
    // Reading all of it would make the kernel sample every CPU's clock.
    constexpr std::size_t kFirstProcessorBytes = 16 << 10;
    const auto content = files.read(files.proc("cpuinfo"), Need::required, kFirstProcessorBytes);
    if (!content) {
        return fields;
    }
    std::string_view rest = *content;
    while (!rest.empty()) {
        const std::size_t newline = rest.find('\n');
        if (newline == std::string_view::npos) {
            break;  // cut off by the limit
        }
        const std::string_view line = rest.substr(0, newline);
        rest = rest.substr(newline + 1);
        if (trim(line).empty() && !fields.empty()) {
            break;
        }
        const std::size_t colon = line.find(':');
        if (colon != std::string_view::npos) {
            fields.emplace(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
        }
    }
    return fields;
}

bool has_word(std::string_view words, std::string_view word) {
    while (!words.empty()) {
        const std::size_t space = words.find(' ');
        if (words.substr(0, space) == word) {
            return true;
        }
        words = space == std::string_view::npos ? std::string_view() : words.substr(space + 1);
    }
    return false;
}

void probe_nested_paging(Cpu& cpu, const std::map<std::string, std::string>& cpuinfo) {
    auto has = [&](std::string_view name) {
        return std::binary_search(cpu.features.begin(), cpu.features.end(), name);
    };
    if (has("svm")) {
        cpu.nested_paging = has("npt");
        cpu.nested_paging_source = "cpuid 0x8000000a";
    } else if (has("vmx")) {
        const auto flags = cpuinfo.find("flags");
        const auto vmx_flags = cpuinfo.find("vmx flags");  // Linux 5.9 and later
        if (flags == cpuinfo.end()) {
            cpu.nested_paging_source = "unknown";
            return;
        }
        cpu.nested_paging = has_word(flags->second, "ept") ||
                            (vmx_flags != cpuinfo.end() && has_word(vmx_flags->second, "ept"));
        cpu.nested_paging_source = "cpuinfo";
    } else {
        cpu.nested_paging = false;
        cpu.nested_paging_source = "no vmx or svm";
    }
}

void probe_tsc(Cpu& cpu, CpuidReader& cpuid, HostFiles& files,
               const std::map<std::string, std::string>& cpuinfo) {
    cpu.tsc.invariant = std::binary_search(cpu.features.begin(), cpu.features.end(), "invtsc");
    if (const CpuidRegisters ratio = cpuid(0x15, 0); ratio.eax != 0 && ratio.ebx != 0 && ratio.ecx != 0) {
        cpu.tsc.hz = std::uint64_t{ratio.ecx} * ratio.ebx / ratio.eax;
        cpu.tsc.source = "cpuid 0x15";
        return;
    }
    if (const std::uint32_t khz = cpuid(kHypervisorTimingLeaf, 0).eax; khz != 0) {
        cpu.tsc.hz = std::uint64_t{khz} * 1000;
        cpu.tsc.source = "cpuid 0x40000010";
        return;
    }
    // AMD's leaf 0x16 is reserved; only Intel's TSC runs at the base frequency it gives.
    if (const std::uint32_t mhz = cpuid(0x16, 0).eax; mhz != 0 && cpu.vendor == "GenuineIntel") {
        cpu.tsc.hz = std::uint64_t{mhz} * 1000000;
        cpu.tsc.source = "cpuid 0x16";
        return;
    }
    if (const auto khz =
            files.read_unsigned(files.sys("devices/system/cpu/cpu0/tsc_freq_khz"), Need::optional)) {
        cpu.tsc.hz = *khz * 1000;
        cpu.tsc.source = "sysfs tsc_freq_khz";
        return;
    }
    if (const auto mhz = cpuinfo.find("cpu MHz"); mhz != cpuinfo.end()) {
        char* end = nullptr;
        const double value = std::strtod(mhz->second.c_str(), &end);
        if (end != mhz->second.c_str() && *end == '\0' && value > 0 && value < 1e6) {
            cpu.tsc.hz = static_cast<std::uint64_t>(std::llround(value * 1e6));
            cpu.tsc.source = "cpuinfo";
            return;
        }
        files.warn(files.proc("cpuinfo"), "cpu MHz: not a frequency: " + quoted_excerpt(mhz->second));
    }
    cpu.tsc.source = "none";
}

void probe_topology(Cpu& cpu, HostFiles& files) {
    const std::filesystem::path online_file = files.sys("devices/system/cpu/online");
    const auto online = files.read_list(online_file, Need::required);
    if (!online) {
        return;
    }
    if (online->empty()) {
        files.warn(online_file, "empty");
        return;
    }
    cpu.online = *online;
    cpu.threads = static_cast<std::uint32_t>(online->size());
    std::set<std::uint64_t> packages;
    std::set<std::pair<std::uint64_t, std::uint64_t>> cores;
    for (std::uint32_t index : *online) {
        const std::string topology = "devices/system/cpu/cpu" + std::to_string(index) + "/topology/";
        const auto package = files.read_unsigned(files.sys(topology + "physical_package_id"), Need::required);
        const auto core = files.read_unsigned(files.sys(topology + "core_id"), Need::required);
        if (package) {
            packages.insert(*package);
            if (core) {
                cores.emplace(*package, *core);
            }
        }
    }
    if (!packages.empty()) {
        cpu.sockets = static_cast<std::uint32_t>(packages.size());
    }
    if (!cores.empty()) {
        cpu.cores = static_cast<std::uint32_t>(cores.size());
    }
}

}  // namespace

std::vector<std::string> cpuid_features(const CpuidFunction& cpuid) {
    CpuidReader reader(cpuid);
    return decode_features(reader);
}

Cpu probe_cpu(HostFiles& files, const CpuidFunction& cpuid) {
    Cpu cpu;
    CpuidReader reader(cpuid);
    const CpuidRegisters vendor = reader(0, 0);
    cpu.vendor = registers_text({vendor.ebx, vendor.edx, vendor.ecx});
    const std::uint32_t signature = reader(0x1, 0).eax;
    const std::uint32_t base_family = (signature >> 8) & 0xf;
    cpu.family = base_family == 0xf ? base_family + ((signature >> 20) & 0xff) : base_family;
    cpu.model = (signature >> 4) & 0xf;
    if (base_family == 0x6 || base_family == 0xf) {
        cpu.model |= ((signature >> 16) & 0xf) << 4;
    }
    cpu.stepping = signature & 0xf;
    cpu.features = decode_features(reader);
    if (reader.open_hypervisor_leaves() != 0) {
        const CpuidRegisters hypervisor = reader(kHypervisorLeaves, 0);
        cpu.hypervisor = trim(registers_text({hypervisor.ebx, hypervisor.ecx, hypervisor.edx}));
    }

    const auto cpuinfo = first_processor(files);
    cpu.model_name = brand_string(reader);
    if (cpu.model_name.empty()) {
        if (const auto name = cpuinfo.find("model name"); name != cpuinfo.end()) {
            cpu.model_name = name->second;
        }
    }
    probe_nested_paging(cpu, cpuinfo);
    probe_tsc(cpu, reader, files, cpuinfo);
    probe_topology(cpu, files);
    return cpu;
}

}  // namespace detail
}  // namespace vim::hwprobe
