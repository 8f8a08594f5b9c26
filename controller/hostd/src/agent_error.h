#pragma once

#include <stdexcept>
#include <string>

namespace vim::controller::hostd {

// A request the agent cannot do, with the HTTP status that says why (404 unknown VM, 409 wrong state,
// 502 a migration that failed); what() is the message the caller gets in {"error": ...}.
class AgentError : public std::runtime_error {
public:
    AgentError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
    int status() const { return status_; }

private:
    int status_;
};

}  // namespace vim::controller::hostd
