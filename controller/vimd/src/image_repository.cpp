#include "image_repository.h"

#include <fcntl.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>

#include "vmm/sys/error.h"

namespace vim::controller::vimd {

namespace {

// Large writes keep the upload's cost in hashing and copying rather than in system calls.
constexpr std::size_t kWriteBufferBytes = 1 << 20;

void write_all(int fd, std::string_view data, const std::filesystem::path& path) {
    while (!data.empty()) {
        const ssize_t written = ::write(fd, data.data(), data.size());
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            vmm::sys::throw_errno("image upload " + path.string() + ": write");
        }
        data.remove_prefix(static_cast<std::size_t>(written));
    }
}

}  // namespace

ImageRepository::ImageRepository(std::filesystem::path root) : root_(std::move(root)) {
    std::filesystem::create_directories(root_ / "sha256");
    std::filesystem::create_directories(root_ / "tmp");
    for (const auto& entry : std::filesystem::directory_iterator(root_ / "tmp")) {
        std::filesystem::remove(entry.path());
    }
}

ImageRepository::Upload ImageRepository::begin_upload(std::uint64_t size_limit) const {
    return Upload(*this, size_limit);
}

std::filesystem::path ImageRepository::path_of(const std::string& sha256) const {
    return root_ / "sha256" / sha256;
}

void ImageRepository::remove(const std::string& sha256) const {
    std::error_code ignored;
    std::filesystem::remove(path_of(sha256), ignored);
}

ImageRepository::Upload::Upload(const ImageRepository& repository, std::uint64_t size_limit)
    : repository_(&repository), size_limit_(size_limit) {
    std::string pattern = (repository.root_ / "tmp" / "upload-XXXXXX").string();
    fd_.reset(::mkostemp(pattern.data(), O_CLOEXEC));
    if (!fd_) {
        vmm::sys::throw_errno("image upload: create a file in " + (repository.root_ / "tmp").string());
    }
    temporary_path_ = pattern;
    buffer_.reserve(kWriteBufferBytes);
}

ImageRepository::Upload::~Upload() {
    if (!committed_ && !temporary_path_.empty()) {
        std::error_code ignored;
        std::filesystem::remove(temporary_path_, ignored);
    }
}

void ImageRepository::Upload::write(std::string_view data) {
    if (data.size() > size_limit_ - size_) {
        throw std::length_error("image larger than the limit of " + std::to_string(size_limit_) + " bytes");
    }
    size_ += data.size();
    hash_.update(data);
    if (buffer_.size() + data.size() > kWriteBufferBytes) {
        flush_buffer();
    }
    if (data.size() >= kWriteBufferBytes) {
        write_all(fd_.get(), data, temporary_path_);
    } else {
        buffer_.append(data);
    }
}

void ImageRepository::Upload::flush_buffer() {
    write_all(fd_.get(), buffer_, temporary_path_);
    buffer_.clear();
}

std::string ImageRepository::Upload::finish() {
    flush_buffer();
    if (::fdatasync(fd_.get()) != 0) {
        vmm::sys::throw_errno("image upload " + temporary_path_.string() + ": fdatasync");
    }
    return hash_.finish_hex();
}

void ImageRepository::Upload::commit(const std::string& sha256) {
    const auto target = repository_->path_of(sha256);
    if (std::filesystem::exists(target)) {
        return;  // the destructor removes the duplicate
    }
    std::filesystem::rename(temporary_path_, target);
    committed_ = true;
}

}  // namespace vim::controller::vimd
