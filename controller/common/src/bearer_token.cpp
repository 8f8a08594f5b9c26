#include "controller/common/bearer_token.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace vim::controller {

std::string read_token_file(const std::filesystem::path& path) {
    std::ifstream file(path);
    if (!file) {
        throw std::runtime_error("token file " + path.string() + ": cannot be read");
    }
    std::ostringstream content;
    content << file.rdbuf();
    std::string token = content.str();
    const auto first = token.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) {
        throw std::runtime_error("token file " + path.string() + ": holds no token");
    }
    token = token.substr(first, token.find_last_not_of(" \t\r\n") - first + 1);
    return token;
}

bool bearer_matches(std::string_view authorization_header, std::string_view expected) {
    constexpr std::string_view kScheme = "Bearer ";
    if (!authorization_header.starts_with(kScheme)) {
        return false;
    }
    const std::string_view presented = authorization_header.substr(kScheme.size());
    // Digests have a fixed length, so neither the token's length nor its bytes shape the timing.
    unsigned char presented_digest[SHA256_DIGEST_LENGTH];
    unsigned char expected_digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), presented_digest);
    SHA256(reinterpret_cast<const unsigned char*>(expected.data()), expected.size(), expected_digest);
    return CRYPTO_memcmp(presented_digest, expected_digest, SHA256_DIGEST_LENGTH) == 0;
}

}  // namespace vim::controller
