#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "vmm/sys/fd.h"

namespace vmm::control::testing {

// A fresh directory under /tmp, removed with everything in it. Unix sockets
// need a local file system, and short /tmp paths stay within sun_path.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string path(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// A client speaking raw bytes, for what send_command() cannot do: partial
// lines, several lines at once, never reading, watching for EOF.
class RawClient {
public:
    explicit RawClient(const std::string& socket_path);

    void send(const std::string& bytes);
    // The next line without its newline; nullopt once the server has closed. Fails the test
    // (throws) when nothing arrives within the timeout.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    void close() { fd_.reset(); }

private:
    sys::Fd fd_;
    std::string buffered_;
};

}  // namespace vmm::control::testing
