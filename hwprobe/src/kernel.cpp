#include <fcntl.h>
#include <liburing.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sections.h"
#include "vmm/sys/fd.h"

namespace vim::hwprobe::detail {
namespace {

Facility usable() { return {true, ""}; }
Facility unusable(std::string detail) { return {false, std::move(detail)}; }

// The same call the block engine makes: it also catches pre-5.12 kernels that
// charge the rings to RLIMIT_MEMLOCK, and seccomp filters that refuse it.
Facility probe_io_uring(HostFiles& files) {
    const std::filesystem::path sysctl = files.proc("sys/kernel/io_uring_disabled");  // Linux 6.6 and later
    if (const auto disabled = files.read_unsigned(sysctl, Need::optional); disabled == 2u) {
        return unusable("disabled by kernel.io_uring_disabled = 2");
    }
    io_uring ring{};
    if (const int error = io_uring_queue_init(1, &ring, 0); error < 0) {
        return unusable(std::string("io_uring_setup: ") + std::strerror(-error));
    }
    io_uring_queue_exit(&ring);
    return usable();
}

// Post-copy migration takes faults from the kernel too (vhost, KVM), so it
// needs a userfaultfd without UFFD_USER_MODE_ONLY.
Facility probe_userfaultfd(HostFiles& files, const std::filesystem::path& dev_root) {
    vmm::sys::Fd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
    if (fd) {
        return usable();
    }
    const int error = errno;
    // Linux 6.1 and later hand one out through /dev/userfaultfd to whoever may open it.
    const std::string device = (dev_root / "userfaultfd").string();
    if (vmm::sys::Fd node(::open(device.c_str(), O_RDWR | O_CLOEXEC)); node) {
        return usable();
    }
    std::string detail = std::string("userfaultfd: ") + std::strerror(error);
    if (error == EPERM) {
        const auto unprivileged =
            files.read_unsigned(files.proc("sys/vm/unprivileged_userfaultfd"), Need::optional);
        if (unprivileged == 0u) {
            detail += " (vm.unprivileged_userfaultfd = 0 and no CAP_SYS_PTRACE)";
        }
    }
    return unusable(detail);
}

Facility probe_vhost_net(const std::filesystem::path& dev_root) {
    const std::string device = (dev_root / "vhost-net").string();
    vmm::sys::Fd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
        return unusable("open " + device + ": " + std::strerror(errno));
    }
    return usable();
}

}  // namespace

Kernel probe_kernel(HostFiles& files, const std::filesystem::path& dev_root) {
    Kernel kernel;
    kernel.release = files.read_value(files.proc("sys/kernel/osrelease"), Need::required).value_or("");
    kernel.io_uring = probe_io_uring(files);
    kernel.userfaultfd = probe_userfaultfd(files, dev_root);
    kernel.vhost_net = probe_vhost_net(dev_root);
    return kernel;
}

}  // namespace vim::hwprobe::detail
