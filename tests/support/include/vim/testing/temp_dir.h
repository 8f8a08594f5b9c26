#pragma once

#include <string>

namespace vim::testing {

// A fresh directory under `parent`, removed with everything in it. The
// default, /tmp, is a local file system (Unix sockets need one) with short
// paths that keep a socket's name within sun_path.
class TempDir {
public:
    explicit TempDir(const std::string& parent = "/tmp");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const noexcept { return path_; }
    std::string path(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

}  // namespace vim::testing
