// vmm: one virtual machine per process. See DESIGN.md for the contract.

#include <cstdio>
#include <exception>

#include "vmm/config/vm_config.h"
#include "vmm/machine/machine.h"

int main(int argc, char** argv) {
    try {
        auto config = vim::vmm::config::parse_command_line(argc, argv);
        if (!config) {
            return 0;  // --help or --version
        }
        return vim::vmm::machine::Machine::create(*config)->run();
    } catch (const vim::vmm::config::UsageError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 2;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 1;
    }
}
