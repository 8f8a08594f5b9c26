#include "hwprobe/probe.h"

#include "host_files.h"
#include "sections.h"

namespace vim::hwprobe {

Inventory probe(const ProbeOptions& options) {
    Inventory inventory;
    detail::HostFiles files(options.sysfs_root, options.procfs_root, inventory.warnings);
    inventory.hostname =
        files.read_value(files.proc("sys/kernel/hostname"), detail::Need::required).value_or("");
    inventory.kernel = detail::probe_kernel(files, options.dev_root);
    inventory.cpu = detail::probe_cpu(files, options.cpuid);
    inventory.kvm = detail::probe_kvm(files, options.dev_root);
    inventory.memory = detail::probe_memory(files);
    inventory.numa_nodes = detail::probe_numa(files);
    inventory.disks = detail::probe_disks(files);
    inventory.state_directory = detail::probe_state_directory(files, options.state_directory);
    inventory.nics = detail::probe_nics(files);
    inventory.pci_devices = detail::probe_pci(files);
    return inventory;
}

}  // namespace vim::hwprobe
