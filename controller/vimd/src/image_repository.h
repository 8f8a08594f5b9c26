#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "controller/common/sha256.h"
#include "vmm/sys/fd.h"

namespace vim::controller::vimd {

// Image content on disk, addressed by its sha256: <root>/sha256/<hex>. Uploads are written to
// <root>/tmp/ and renamed into place only once complete and checked, so a reader never sees half an
// image and an interrupted upload leaves nothing behind (its file is removed, or swept at the next start).
class ImageRepository {
public:
    // Creates the folders; removes what interrupted uploads of an earlier run left in tmp/.
    explicit ImageRepository(std::filesystem::path root);

    class Upload {
    public:
        Upload(const Upload&) = delete;
        Upload& operator=(const Upload&) = delete;
        ~Upload();  // removes the temporary file unless committed

        // Appends data; throws std::runtime_error when the size limit is passed.
        void write(std::string_view data);
        std::uint64_t size() const { return size_; }
        // Flushes the content to disk and returns its sha256.
        std::string finish();
        // Moves the finished content to its address (content already there is kept: it is the same).
        void commit(const std::string& sha256);

    private:
        friend class ImageRepository;
        Upload(const ImageRepository& repository, std::uint64_t size_limit);
        void flush_buffer();

        const ImageRepository* repository_;
        std::filesystem::path temporary_path_;
        vmm::sys::Fd fd_;
        Sha256 hash_;
        std::string buffer_;
        std::uint64_t size_ = 0;
        std::uint64_t size_limit_;
        bool committed_ = false;
    };

    Upload begin_upload(std::uint64_t size_limit) const;
    std::filesystem::path path_of(const std::string& sha256) const;
    void remove(const std::string& sha256) const;

private:
    std::filesystem::path root_;
};

}  // namespace vim::controller::vimd
