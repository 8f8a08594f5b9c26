#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

namespace vim::controller {

// An incremental SHA-256 over OpenSSL's EVP interface (SHA-NI or AVX2 where the CPU has them).
class Sha256 {
public:
    Sha256();
    void update(std::string_view data);
    // Lower-case hex of the digest; the hash cannot be updated afterwards.
    std::string finish_hex();

private:
    struct ContextDeleter {
        void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
    };
    std::unique_ptr<EVP_MD_CTX, ContextDeleter> context_;
};

std::string sha256_hex(std::string_view data);

}  // namespace vim::controller
