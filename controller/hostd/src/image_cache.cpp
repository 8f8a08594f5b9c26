#include "image_cache.h"

#include <httplib.h>

#include <fstream>
#include <memory>

#include "controller/common/sha256.h"

namespace vim::controller::hostd {
ImageCache::ImageCache(std::filesystem::path directory, std::optional<std::string> token)
    : directory_(std::move(directory)), token_(std::move(token)) {
    std::filesystem::create_directories(directory_);
}

std::filesystem::path ImageCache::fetch(const api::AgentVmSpec::Image& image) {
    const std::filesystem::path path = directory_ / image.sha256;
    std::lock_guard lock(mutex_);
    if (!std::filesystem::exists(path)) {
        download(image, path);
    }
    return path;
}

void ImageCache::download(const api::AgentVmSpec::Image& image, const std::filesystem::path& target) {
    const std::string name = "image " + image.sha256 + " from " + image.url;
    const auto scheme_end = image.url.find("://");
    const auto path_start = image.url.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
    if (scheme_end == std::string::npos || path_start == std::string::npos) {
        throw std::runtime_error(name + ": not an http://HOST:PORT/PATH url");
    }
    httplib::Client client(image.url.substr(0, path_start));
    client.set_connection_timeout(10);
    client.set_read_timeout(60);
    httplib::Headers headers;
    if (token_) {
        headers.emplace("Authorization", "Bearer " + *token_);
    }

    const std::filesystem::path temporary = target.string() + ".part";
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    if (!file) {
        throw std::runtime_error(name + ": cannot create " + temporary.string());
    }
    Sha256 digest;
    std::uint64_t received = 0;
    bool too_long = false;
    const auto result =
        client.Get(image.url.substr(path_start), headers, [&](const char* data, std::size_t length) {
            received += length;
            if (received > image.size) {
                too_long = true;
                return false;
            }
            digest.update({data, length});
            file.write(data, static_cast<std::streamsize>(length));
            return static_cast<bool>(file);
        });
    file.close();
    const auto fail = [&](const std::string& problem) {
        std::filesystem::remove(temporary);
        throw std::runtime_error(name + ": " + problem);
    };
    if (too_long) {
        fail("more than the announced " + std::to_string(image.size) + " bytes");
    }
    if (!result) {
        fail("download failed: " + httplib::to_string(result.error()));
    }
    if (result->status != 200) {
        fail("the server answered " + std::to_string(result->status));
    }
    if (!file) {
        fail("cannot write " + temporary.string());
    }
    if (received != image.size) {
        fail(std::to_string(received) + " bytes, not the announced " + std::to_string(image.size));
    }
    if (const std::string sha256 = digest.finish_hex(); sha256 != image.sha256) {
        fail("sha256 mismatch: the content has " + sha256);
    }
    std::filesystem::rename(temporary, target);
}

}  // namespace vim::controller::hostd
