#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>

#include "controller/api/validation.h"
#include "render.h"
#include "service.h"
#include "vmm/sys/error.h"
#include "vmm/sys/fd.h"

namespace vim::controller::vimd {

namespace {

std::optional<std::uint64_t> content_length(const httplib::Request& request) {
    if (!request.has_header("Content-Length")) {
        return std::nullopt;
    }
    const std::string text = request.get_header_value("Content-Length");
    std::uint64_t length = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), length);
    if (error != std::errc() || end != text.data() + text.size()) {
        throw HttpError(400, "Content-Length: not a number");
    }
    return length;
}

}  // namespace

void Service::upload_image(Call& call) {
    call.allow_only_query({"name", "sha256"});
    const auto name = call.query("name");
    if (!name) {
        throw api::ValidationError("name", "the query parameter is required");
    }
    api::check_name("name", *name);
    const auto expected_sha256 = call.query("sha256");
    if (expected_sha256 && (expected_sha256->size() != 64 ||
                            expected_sha256->find_first_not_of("0123456789abcdef") != std::string::npos)) {
        throw api::ValidationError("sha256", "must be 64 lowercase hexadecimal digits");
    }
    const auto length = content_length(call.request);
    if (length && *length > config_.max_image_bytes) {
        throw HttpError(413, "body: the image is " + std::to_string(*length) +
                                 " bytes, more than the limit of " + std::to_string(config_.max_image_bytes));
    }
    if (!length && call.request.get_header_value("Transfer-Encoding") != "chunked") {
        throw HttpError(411, "Content-Length: required");
    }

    // The record first: a name already taken is refused before a byte is read.
    store::Image record;
    record.id = store::new_id();
    record.name = *name;
    record.status = store::ImageStatus::uploading;
    record = store_->create_image(record);
    bool record_kept = false;
    try {
        auto upload = images_.begin_upload(config_.max_image_bytes);
        std::string limit_error;
        call.body_read = true;
        const bool complete = (*call.reader)([&](const char* data, std::size_t size) {
            try {
                upload.write({data, size});
                return true;
            } catch (const std::length_error& error) {
                limit_error = error.what();
                return false;
            }
        });
        if (!limit_error.empty()) {
            throw HttpError(413, "body: " + limit_error);
        }
        if (!complete || (length && upload.size() != *length)) {
            throw HttpError(400, "body: the upload ended after " + std::to_string(upload.size()) + " bytes" +
                                     (length ? " of " + std::to_string(*length) : std::string()));
        }
        const std::string sha256 = upload.finish();
        if (expected_sha256 && *expected_sha256 != sha256) {
            throw api::ValidationError("sha256",
                                       "the content's sha256 is " + sha256 + ", not " + *expected_sha256);
        }
        if (auto existing = store_->find_image_by_name(*name); existing && existing->id != record.id) {
            throw HttpError(409, "name: image name \"" + *name + "\" already exists");
        }
        upload.commit(sha256);
        try {
            record = store_->finish_image_upload(record.id, sha256, static_cast<std::int64_t>(upload.size()));
        } catch (const store::ConflictError&) {
            throw HttpError(409, "body: the same content is stored already, as image " + sha256);
        }
        record_kept = true;
        spdlog::info("image {} stored: {} bytes, sha256 {}", record.name, record.size_bytes, sha256);
    } catch (...) {
        if (!record_kept) {
            try {
                store_->delete_image(record.id);
            } catch (const std::exception& error) {
                spdlog::error("image {}: removing the failed upload's record: {}", *name, error.what());
            }
        }
        throw;
    }
    call.response.status = 201;
    call.response.set_content(image_json(record).dump(), "application/json");
}

void Service::list_images(Call& call) {
    call.allow_only_query({"limit", "page_token"});
    const auto page = store_->list_images(call.page());
    nlohmann::json items = nlohmann::json::array();
    for (const auto& image : page.items) {
        items.push_back(image_json(image));
    }
    call.response.status = 200;
    call.response.set_content(
        nlohmann::json{{"items", items}, {"next_page_token", page.next_page_token}}.dump(),
        "application/json");
}

void Service::show_image(Call& call) {
    call.response.status = 200;
    call.response.set_content(image_json(find_image(call.parameter())).dump(), "application/json");
}

void Service::delete_image(Call& call) {
    call.json_body(true);
    const auto image = find_image(call.parameter());
    store_->delete_image(image.id);
    if (image.status == store::ImageStatus::ready) {
        images_.remove(image.id);
    }
    spdlog::info("image {} deleted", image.name);
    call.response.status = 204;
}

void Service::download_image(Call& call) {
    const auto image = find_image(call.parameter());
    if (image.status != store::ImageStatus::ready) {
        throw HttpError(409, "image \"" + image.name + "\" is still uploading");
    }
    const auto path = images_.path_of(image.id);
    auto fd = std::make_shared<vmm::sys::Fd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!*fd) {
        vmm::sys::throw_errno("image " + image.name + ": open " + path.string());
    }
    const auto size = static_cast<std::size_t>(image.size_bytes);
    // httplib drops the connection for a range that starts past the end; RFC 9110 wants a 416.
    for (const auto& [first, last] : call.request.ranges) {
        if (first >= 0 && static_cast<std::uint64_t>(first) >= size) {
            call.response.set_header("Content-Range", "bytes */" + std::to_string(size));
            throw HttpError(416,
                            "Range: starts past the end of the image's " + std::to_string(size) + " bytes");
        }
    }
    // The status stays unset: httplib makes it 206 when the request has a Range.
    call.response.set_header("Accept-Ranges", "bytes");
    // httplib cuts the requested ranges out of what this provider serves (206, or 416 for a bad range).
    call.response.set_content_provider(
        size, "application/octet-stream",
        [fd, path](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
            std::vector<char> buffer(std::min<std::size_t>(length, 1 << 20));
            while (length > 0) {
                const ssize_t got = ::pread(fd->get(), buffer.data(), std::min(buffer.size(), length),
                                            static_cast<off_t>(offset));
                if (got <= 0) {
                    if (got < 0 && errno == EINTR) {
                        continue;
                    }
                    spdlog::error("image {}: read at {} failed", path.string(), offset);
                    return false;
                }
                if (!sink.write(buffer.data(), static_cast<std::size_t>(got))) {
                    return false;
                }
                offset += static_cast<std::size_t>(got);
                length -= static_cast<std::size_t>(got);
            }
            return true;
        });
}

}  // namespace vim::controller::vimd
