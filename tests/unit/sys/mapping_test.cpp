#include "vmm/sys/mapping.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <system_error>
#include <utility>

namespace {

bool is_mapped(void* address) {
    unsigned char residency;
    return ::mincore(address, 4096, &residency) == 0;
}

vim::vmm::sys::Mapping anonymous_page() {
    return vim::vmm::sys::Mapping::map("test page", 4096, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS);
}

TEST(Mapping, UnmapsOnDestruction) {
    void* address;
    {
        auto page = anonymous_page();
        address = page.data();
        page.data()[0] = 42;
        EXPECT_TRUE(is_mapped(address));
    }
    EXPECT_FALSE(is_mapped(address));
}

TEST(Mapping, MoveTransfersOwnershipAndUnmapsOnce) {
    auto first = anonymous_page();
    void* address = first.data();
    vim::vmm::sys::Mapping second(std::move(first));
    EXPECT_FALSE(first.valid());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(first.size(), 0u);
    EXPECT_EQ(second.data(), address);
    { vim::vmm::sys::Mapping sink(std::move(first)); }  // an empty owner unmaps nothing
    EXPECT_TRUE(is_mapped(address));
}

TEST(Mapping, MoveAssignmentUnmapsTheOverwrittenRange) {
    auto kept = anonymous_page();
    auto replaced = anonymous_page();
    void* replaced_address = replaced.data();
    void* kept_address = kept.data();
    replaced = std::move(kept);
    EXPECT_FALSE(is_mapped(replaced_address));
    EXPECT_EQ(replaced.data(), kept_address);
}

TEST(Mapping, FailureNamesWhatWasBeingMapped) {
    try {
        vim::vmm::sys::Mapping::map("guest RAM", 4096, PROT_READ, MAP_SHARED, -1);
        FAIL() << "mapping an invalid fd succeeded";
    } catch (const std::system_error& error) {
        EXPECT_STREQ(error.what(), "mmap guest RAM: Bad file descriptor");
    }
}

}  // namespace
