#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace vim::controller {

// The token of a token file: its content with surrounding whitespace (a trailing newline) removed.
// Throws std::runtime_error naming the file when it cannot be read or holds no token.
std::string read_token_file(const std::filesystem::path& path);

// Whether an Authorization header carries `Bearer <expected>`. The comparison takes the same time
// whatever the bytes (it compares digests of both), so a client cannot find the token byte by byte.
bool bearer_matches(std::string_view authorization_header, std::string_view expected);

}  // namespace vim::controller
