// hwprobe: prints this host's inventory (CPU, KVM, memory, NUMA, disks, NICs,
// PCI, kernel facilities) as JSON, or as a table for people.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "hwprobe/probe.h"
#include "hwprobe/report.h"

int main(int argc, char** argv) {
    CLI::App app("Prints this host's inventory as hostd registers it with the controller.", "hwprobe");
    vim::hwprobe::ProbeOptions options;
    std::string format = "json";
    std::string state_directory;
    app.add_option("--format", format, "json (default; hwprobe/SCHEMA.md) or table")
        ->check(CLI::IsMember({"json", "table"}));
    app.add_option("--sysfs-root", options.sysfs_root, "where sysfs is mounted")->capture_default_str();
    app.add_option("--procfs-root", options.procfs_root, "where procfs is mounted")->capture_default_str();
    app.add_option("--dev-root", options.dev_root, "where kvm, vhost-net and userfaultfd are")
        ->capture_default_str();
    app.add_option("--state-dir", state_directory,
                   "the agent's state directory, whose free space is reported");
    app.footer("Unreadable or malformed files leave their values null and are listed under \"warnings\"; "
               "the exit status is 0 all the same.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::ParseError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 2;
    }
    if (!state_directory.empty()) {
        options.state_directory = state_directory;
    }
    try {
        const vim::hwprobe::Inventory inventory = vim::hwprobe::probe(options);
        const std::string text = format == "table" ? vim::hwprobe::to_table(inventory)
                                                   : vim::hwprobe::to_json(inventory).dump(2) + "\n";
        std::fputs(text.c_str(), stdout);
        return 0;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 1;
    }
}
