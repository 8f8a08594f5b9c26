#pragma once

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "controller/api/types.h"

namespace vim::controller::hostd {

// Images by sha256 under one folder, each downloaded once from the controller (with the bearer token),
// checked against its sha256 and size before it is kept: written to a temporary file, renamed when right.
class ImageCache {
public:
    ImageCache(std::filesystem::path directory, std::optional<std::string> token);

    // The cached file of image, downloaded first when missing. Throws std::runtime_error naming the image
    // when the download fails or its content is not the one announced; nothing is kept then.
    std::filesystem::path fetch(const api::AgentVmSpec::Image& image);

private:
    void download(const api::AgentVmSpec::Image& image, const std::filesystem::path& target);

    std::filesystem::path directory_;
    std::optional<std::string> token_;
    std::mutex mutex_;  // one download at a time: two VMs of one new image fetch it once
};

}  // namespace vim::controller::hostd
