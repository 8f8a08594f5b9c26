#include "vmm/sys/fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <utility>

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

int open_pipe_end() {
    int ends[2];
    EXPECT_EQ(::pipe(ends), 0);
    ::close(ends[1]);
    return ends[0];
}

TEST(Fd, ClosesOnDestruction) {
    int raw = open_pipe_end();
    { vim::vmm::sys::Fd fd(raw); }
    EXPECT_FALSE(is_open(raw));
}

TEST(Fd, MoveConstructionLeavesMinusOneBehind) {
    int raw = open_pipe_end();
    vim::vmm::sys::Fd first(raw);
    vim::vmm::sys::Fd second(std::move(first));
    EXPECT_EQ(first.get(), -1);  // NOLINT(bugprone-use-after-move): the point of the test
    EXPECT_FALSE(first.valid());
    EXPECT_EQ(second.get(), raw);
    EXPECT_TRUE(is_open(raw));
}

TEST(Fd, MoveAssignmentClosesTheOverwrittenDescriptorOnce) {
    int kept = open_pipe_end();
    int replaced = open_pipe_end();
    {
        vim::vmm::sys::Fd target(replaced);
        vim::vmm::sys::Fd source(kept);
        target = std::move(source);
        EXPECT_FALSE(is_open(replaced));
        EXPECT_EQ(target.get(), kept);
        EXPECT_EQ(source.get(), -1);  // NOLINT(bugprone-use-after-move)
        // The number of the closed fd may be reused right away; the moved-from
        // Fd must not close whatever now holds it.
        int reused = open_pipe_end();
        { vim::vmm::sys::Fd gone(std::move(source)); }
        EXPECT_TRUE(is_open(reused));
        ::close(reused);
    }
    EXPECT_FALSE(is_open(kept));
}

TEST(Fd, SelfMoveAssignmentKeepsTheDescriptor) {
    int raw = open_pipe_end();
    vim::vmm::sys::Fd fd(raw);
    auto& alias = fd;
    fd = std::move(alias);
    EXPECT_EQ(fd.get(), raw);
    EXPECT_TRUE(is_open(raw));
}

TEST(Fd, ReleaseGivesUpOwnership) {
    int raw = open_pipe_end();
    {
        vim::vmm::sys::Fd fd(raw);
        EXPECT_EQ(fd.release(), raw);
        EXPECT_FALSE(fd.valid());
    }
    EXPECT_TRUE(is_open(raw));
    ::close(raw);
}

}  // namespace
