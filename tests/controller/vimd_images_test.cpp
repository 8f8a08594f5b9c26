// The image repository through vimd's API: streamed uploads checked by sha256, content-addressed
// storage, Range downloads, and nothing left behind by a failed or interrupted upload.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "vim/testing/vimd_process.h"

namespace {

using vim::testing::HttpClient;
using vim::testing::upload_image;
using vim::testing::VimdProcess;

std::string sha256_of(const std::string& data) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
    std::string hex;
    for (const unsigned char byte : digest) {
        static constexpr char kDigits[] = "0123456789abcdef";
        hex += kDigits[byte >> 4];
        hex += kDigits[byte & 0xf];
    }
    return hex;
}

std::string pattern(std::size_t size) {
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        data[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
    }
    return data;
}

std::size_t files_in(const std::filesystem::path& folder) {
    if (!std::filesystem::exists(folder)) {
        return 0;
    }
    return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(folder), {}));
}

TEST(VimdImages, UploadIsStoredUnderItsSha256AndDownloadsWhole) {
    VimdProcess vimd;
    const auto http = vimd.client();
    const std::string content = pattern(3 << 20);
    const std::string sha256 = sha256_of(content);
    const auto uploaded = upload_image(http, "debian", content, sha256);
    ASSERT_EQ(uploaded.status, 201) << uploaded.body;
    EXPECT_EQ(uploaded.json()["sha256"], sha256);
    EXPECT_EQ(uploaded.json()["id"], sha256);
    EXPECT_EQ(uploaded.json()["size_bytes"], content.size());
    EXPECT_EQ(uploaded.json()["status"], "ready");
    EXPECT_TRUE(std::filesystem::exists(vimd.state_dir() / "images" / "sha256" / sha256));
    EXPECT_EQ(files_in(vimd.state_dir() / "images" / "tmp"), 0u);

    const auto download = http.get("/v1/images/debian/content");
    ASSERT_EQ(download.status, 200);
    EXPECT_TRUE(download.body == content);
    EXPECT_EQ(http.get("/v1/images/" + sha256).json()["name"], "debian");
    EXPECT_EQ(http.get("/v1/images").json()["items"].size(), 1u);
}

TEST(VimdImages, RangeDownloadsServeExactlyTheAskedBytes) {
    VimdProcess vimd;
    const auto http = vimd.client();
    const std::string content = pattern(100000);
    ASSERT_EQ(upload_image(http, "img", content).status, 201);
    const auto part = http.request("GET", "/v1/images/img/content", "", {{"Range", "bytes=1000-1999"}});
    ASSERT_EQ(part.status, 206);
    EXPECT_EQ(part.headers.at("Content-Range"), "bytes 1000-1999/100000");
    EXPECT_TRUE(part.body == content.substr(1000, 1000));
    const auto tail = http.request("GET", "/v1/images/img/content", "", {{"Range", "bytes=-10"}});
    ASSERT_EQ(tail.status, 206);
    EXPECT_TRUE(tail.body == content.substr(content.size() - 10));
    const auto beyond = http.request("GET", "/v1/images/img/content", "", {{"Range", "bytes=200000-300000"}});
    EXPECT_EQ(beyond.status, 416);
}

TEST(VimdImages, AWrongChecksumIsRefusedAndLeavesNothing) {
    VimdProcess vimd;
    const auto http = vimd.client();
    const std::string content = pattern(50000);
    const auto refused = upload_image(http, "img", content, std::string(64, '0'));
    EXPECT_EQ(refused.status, 400);
    EXPECT_EQ(refused.error(),
              "sha256: the content's sha256 is " + sha256_of(content) + ", not " + std::string(64, '0'));
    EXPECT_EQ(http.get("/v1/images").json()["items"].size(), 0u);
    EXPECT_EQ(files_in(vimd.state_dir() / "images" / "sha256"), 0u);
    EXPECT_EQ(files_in(vimd.state_dir() / "images" / "tmp"), 0u);
    EXPECT_EQ(upload_image(http, "img", content, "xyz").error(),
              "sha256: must be 64 lowercase hexadecimal digits");
    EXPECT_EQ(upload_image(http, "Bad Name", content).status, 400);
    EXPECT_EQ(http.request("POST", "/v1/images", content).error(), "name: the query parameter is required");
}

TEST(VimdImages, AnUploadCutOffHalfWayLeavesNothingBehind) {
    VimdProcess vimd;
    const auto http = vimd.client();
    const int socket_fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{.sin_family = AF_INET,
                        .sin_port = htons(static_cast<uint16_t>(vimd.port())),
                        .sin_addr = {},
                        .sin_zero = {}};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(socket_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    const std::string head =
        "POST /v1/images?name=half HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 4194304\r\n\r\n";
    const std::string half = pattern(2 << 20);
    ASSERT_EQ(::write(socket_fd, head.data(), head.size()), static_cast<ssize_t>(head.size()));
    std::size_t sent = 0;
    while (sent < half.size()) {
        const ssize_t wrote = ::write(socket_fd, half.data() + sent, half.size() - sent);
        ASSERT_GT(wrote, 0);
        sent += static_cast<std::size_t>(wrote);
    }
    // While the upload is under way its record says so and its temporary file exists.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (files_in(vimd.state_dir() / "images" / "tmp") == 0 &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(http.get("/v1/images/half").json()["status"], "uploading");
    ::close(socket_fd);
    while (
        (files_in(vimd.state_dir() / "images" / "tmp") != 0 || http.get("/v1/images/half").status != 404) &&
        std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(http.get("/v1/images/half").status, 404);
    EXPECT_EQ(files_in(vimd.state_dir() / "images" / "tmp"), 0u);
    EXPECT_EQ(files_in(vimd.state_dir() / "images" / "sha256"), 0u);
    // The name is free again.
    EXPECT_EQ(upload_image(http, "half", pattern(1000)).status, 201);
}

TEST(VimdImages, TheSizeLimitAndNameCollisionsAreRefused) {
    VimdProcess vimd({.extra_arguments = {"--max-image-bytes", "10000"}});
    const auto http = vimd.client();
    const auto too_big = upload_image(http, "big", pattern(20000));
    EXPECT_EQ(too_big.status, 413);
    EXPECT_EQ(too_big.error(), "body: the image is 20000 bytes, more than the limit of 10000");
    ASSERT_EQ(upload_image(http, "small", pattern(5000)).status, 201);
    const auto again = upload_image(http, "small", pattern(6000));
    EXPECT_EQ(again.status, 409);
    EXPECT_TRUE(again.error().starts_with("name: ")) << again.body;
    const auto same_content = upload_image(http, "copy", pattern(5000));
    EXPECT_EQ(same_content.status, 409);
    EXPECT_EQ(http.get("/v1/images").json()["items"].size(), 1u);
    EXPECT_EQ(files_in(vimd.state_dir() / "images" / "tmp"), 0u);
}

TEST(VimdImages, DeleteRemovesTheContent) {
    VimdProcess vimd;
    const auto http = vimd.client();
    const auto uploaded = upload_image(http, "img", pattern(1000)).json();
    EXPECT_EQ(http.remove("/v1/images/img").status, 204);
    EXPECT_EQ(http.get("/v1/images/img").status, 404);
    EXPECT_FALSE(std::filesystem::exists(vimd.state_dir() / "images" / "sha256" /
                                         uploaded["sha256"].get<std::string>()));
}

}  // namespace
