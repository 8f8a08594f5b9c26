#pragma once

#include <string>
#include <string_view>

#include "vmm/control/command.h"

namespace vim::vmm::control {

// Parses one request line (no newline), runs its command and returns the reply
// line, newline included. Whatever the client sent or the command threw ends
// as an {"ok": false, "error": ...} reply, never as an exception.
std::string dispatch_line(const CommandTable& commands, std::string_view line);

// The reply line {"ok": false, "error": message}, newline included.
std::string error_line(std::string_view message);

}  // namespace vim::vmm::control
