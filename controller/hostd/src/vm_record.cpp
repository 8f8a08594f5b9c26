#include "controller/hostd/vm_record.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include "vmm/sys/error.h"
#include "vmm/sys/fd.h"

namespace vim::controller::hostd {

nlohmann::json VmRecord::to_json() const {
    return {{"id", id},
            {"spec", spec},
            {"pid", pid},
            {"start_time", start_time},
            {"api_socket", api_socket},
            {"owns_disks", owns_disks},
            {"incoming_uri", incoming_uri},
            {"taps", taps}};
}

VmRecord VmRecord::from_json(const nlohmann::json& json) {
    VmRecord record;
    const auto field = [&](const char* name) -> const nlohmann::json& {
        if (!json.is_object() || !json.contains(name)) {
            throw std::runtime_error(std::string("field ") + name + " is missing");
        }
        return json.at(name);
    };
    try {
        record.id = field("id").get<std::string>();
        record.spec = field("spec");
        record.pid = field("pid").get<pid_t>();
        record.start_time = field("start_time").get<std::uint64_t>();
        record.api_socket = field("api_socket").get<std::string>();
        record.owns_disks = field("owns_disks").get<bool>();
        record.incoming_uri = field("incoming_uri").get<std::string>();
        record.taps = field("taps").get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception& error) {
        throw std::runtime_error(error.what());
    }
    return record;
}

void save_record(const std::filesystem::path& path, const VmRecord& record) {
    const std::string text = record.to_json().dump(2) + "\n";
    const std::filesystem::path temporary = path.string() + ".tmp";
    vmm::sys::Fd file(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!file) {
        vmm::sys::throw_errno("vm record " + temporary.string() + ": create");
    }
    if (::write(file.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        vmm::sys::throw_errno("vm record " + temporary.string() + ": write");
    }
    // The rename must not reach the disk before the content does.
    if (::fsync(file.get()) != 0) {
        vmm::sys::throw_errno("vm record " + temporary.string() + ": fsync");
    }
    file.reset();
    if (::rename(temporary.c_str(), path.c_str()) != 0) {
        vmm::sys::throw_errno("vm record " + path.string() + ": rename");
    }
}

VmRecord load_record(const std::filesystem::path& path) {
    std::ifstream file(path);
    if (!file) {
        throw std::runtime_error("vm record " + path.string() + ": cannot be read");
    }
    try {
        return VmRecord::from_json(nlohmann::json::parse(file));
    } catch (const std::exception& error) {
        throw std::runtime_error("vm record " + path.string() + ": " + error.what());
    }
}

}  // namespace vim::controller::hostd
