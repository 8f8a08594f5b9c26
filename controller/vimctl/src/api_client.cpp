#include "controller/vimctl/api_client.h"

#include <httplib.h>

#include <fstream>

namespace vim::controller::vimctl {

namespace {

constexpr auto kTimeout = std::chrono::seconds(120);

httplib::Client connect(const std::string& url, const std::optional<std::string>& token) {
    httplib::Client client(url);
    client.set_connection_timeout(std::chrono::seconds(10));
    client.set_read_timeout(kTimeout);
    client.set_write_timeout(kTimeout);
    client.set_keep_alive(false);
    if (token) {
        client.set_bearer_token_auth(*token);
    }
    return client;
}

nlohmann::json reply_or_throw(const httplib::Result& result, const std::string& url,
                              const std::string& what) {
    if (!result) {
        throw ApiError(0, "cannot reach the controller at " + url + " (" + what +
                              "): " + httplib::to_string(result.error()));
    }
    nlohmann::json body =
        result->body.empty() ? nlohmann::json::object() : nlohmann::json::parse(result->body, nullptr, false);
    if (result->status >= 400) {
        std::string message = result->body;
        if (body.is_object() && body.contains("error") && body["error"].is_string()) {
            message = body["error"].get<std::string>();
        }
        throw ApiError(result->status, message);
    }
    if (body.is_discarded()) {
        throw ApiError(result->status, what + ": the controller's reply is not JSON");
    }
    return body;
}

}  // namespace

std::string query_string(const std::map<std::string, std::string>& query) {
    std::string text;
    for (const auto& [name, value] : query) {
        text += (text.empty() ? "" : "&") + name + "=" + httplib::detail::encode_query_param(value);
    }
    return text;
}

ApiClient::ApiClient(std::string controller_url, std::optional<std::string> token)
    : url_(std::move(controller_url)), token_(std::move(token)) {
    while (url_.ends_with('/')) {
        url_.pop_back();
    }
    if (!httplib::Client(url_).is_valid()) {
        throw ApiError(0, "controller URL " + url_ + " is not valid");
    }
}

nlohmann::json ApiClient::get(const std::string& path,
                              const std::map<std::string, std::string>& query) const {
    auto client = connect(url_, token_);
    const std::string target = query.empty() ? path : path + "?" + query_string(query);
    return reply_or_throw(client.Get(target), url_, "GET " + path);
}

nlohmann::json ApiClient::post(const std::string& path, const nlohmann::json& body,
                               const std::map<std::string, std::string>& headers) const {
    auto client = connect(url_, token_);
    httplib::Headers extra(headers.begin(), headers.end());
    return reply_or_throw(client.Post(path, extra, body.dump(), "application/json"), url_, "POST " + path);
}

nlohmann::json ApiClient::patch(const std::string& path, const nlohmann::json& body) const {
    auto client = connect(url_, token_);
    return reply_or_throw(client.Patch(path, body.dump(), "application/json"), url_, "PATCH " + path);
}

nlohmann::json ApiClient::remove(const std::string& path) const {
    auto client = connect(url_, token_);
    return reply_or_throw(client.Delete(path), url_, "DELETE " + path);
}

nlohmann::json ApiClient::upload(const std::string& path, const std::map<std::string, std::string>& query,
                                 const std::filesystem::path& file, const Progress& progress) const {
    auto input = std::make_shared<std::ifstream>(file, std::ios::binary);
    if (!*input) {
        throw ApiError(0, "image file " + file.string() + ": cannot be read");
    }
    const auto total = std::filesystem::file_size(file);
    auto client = connect(url_, token_);
    auto buffer = std::make_shared<std::vector<char>>(1 << 20);
    auto result = client.Post(
        path + "?" + query_string(query), total,
        [input, buffer, total, &progress](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
            input->seekg(static_cast<std::streamoff>(offset));
            input->read(buffer->data(), static_cast<std::streamsize>(std::min(length, buffer->size())));
            const auto got = static_cast<std::size_t>(input->gcount());
            if (got == 0 || !sink.write(buffer->data(), got)) {
                return false;
            }
            if (progress) {
                progress(offset + got, total);
            }
            return true;
        },
        "application/octet-stream");
    return reply_or_throw(result, url_, "POST " + path);
}

void ApiClient::download(const std::string& path, const std::filesystem::path& file) const {
    std::ofstream output(file, std::ios::binary | std::ios::trunc);
    if (!output) {
        throw ApiError(0, "file " + file.string() + ": cannot be written");
    }
    auto client = connect(url_, token_);
    std::string error_body;
    int status = 0;
    auto result = client.Get(
        path,
        [&](const httplib::Response& response) {
            status = response.status;
            return true;
        },
        [&](const char* data, std::size_t length) {
            if (status >= 400) {
                error_body.append(data, length);
            } else {
                output.write(data, static_cast<std::streamsize>(length));
            }
            return static_cast<bool>(output);
        });
    if (result && result->status >= 400) {
        result->body = error_body;
    }
    reply_or_throw(result, url_, "GET " + path);
}

}  // namespace vim::controller::vimctl
