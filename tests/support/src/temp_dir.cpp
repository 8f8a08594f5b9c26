#include "vim/testing/temp_dir.h"

#include <stdlib.h>

#include <filesystem>
#include <system_error>

#include "vmm/sys/error.h"

namespace vim::testing {

TempDir::TempDir(const std::string& parent) {
    std::string pattern = parent + "/vim-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
        vmm::sys::throw_errno("mkdtemp " + pattern);
    }
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

}  // namespace vim::testing
