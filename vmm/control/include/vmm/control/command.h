#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace vim::vmm::control {

// Thrown by a command function to refuse the request; the client gets
// {"ok": false, "error": <message>}, so the message must name what is wrong.
class CommandError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Receives the whole request object ("cmd" included) and returns the reply's
// fields; the server adds "ok": true, overwriting any "ok" the function set.
// A null result (what `return {};` makes) counts as an empty object.
// Runs on the event loop's thread, one request at a time: it must be quick
// (start long work elsewhere and report it through another command), and it
// must not stop or destroy the server that called it (post that to the loop).
using CommandFunction = std::function<nlohmann::json(const nlohmann::json& request)>;

// Commands by name. std::less<> lets the server look names up without copying.
using CommandTable = std::map<std::string, CommandFunction, std::less<>>;

}  // namespace vim::vmm::control
