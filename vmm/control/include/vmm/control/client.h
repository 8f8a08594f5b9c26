#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace vim::vmm::control {

// Connects to the control socket at socket_path, sends request as one line and
// returns the reply object, whether "ok" is true or false. Throws
// std::system_error when connecting or sending fails, and std::runtime_error
// naming socket_path when no complete reply arrives within timeout (which
// covers the whole exchange), the server closes first, or the reply is not JSON.
nlohmann::json send_command(const std::string& socket_path, const nlohmann::json& request,
                            std::chrono::milliseconds timeout);

}  // namespace vim::vmm::control
