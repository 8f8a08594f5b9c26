#include "dispatch.h"

#include <exception>

namespace vim::vmm::control {

namespace {

using nlohmann::json;

json failure(std::string_view message) { return json{{"ok", false}, {"error", message}}; }

std::string to_line(const json& reply) {
    // Command names and parse errors echo client bytes, which need not be
    // valid UTF-8; replacing bad sequences keeps dump() from throwing.
    return reply.dump(-1, ' ', false, json::error_handler_t::replace) + '\n';
}

// nlohmann's messages start with "[json.exception.parse_error.101] ", which
// means nothing to a client.
std::string parse_error_text(const json::parse_error& error) {
    std::string_view text = error.what();
    if (const auto end = text.find("] "); text.starts_with("[json.exception.") && end != text.npos) {
        text.remove_prefix(end + 2);
    }
    return std::string(text);
}

json run(const CommandTable& commands, std::string_view line) {
    json request;
    try {
        request = json::parse(line);
    } catch (const json::parse_error& error) {
        return failure("invalid JSON: " + parse_error_text(error));
    }
    if (!request.is_object()) {
        return failure(std::string("request must be a JSON object, not ") + request.type_name());
    }
    const auto name_field = request.find("cmd");
    if (name_field == request.end()) {
        return failure("request has no \"cmd\" field");
    }
    if (!name_field->is_string()) {
        return failure(std::string("\"cmd\" must be a string, not ") + name_field->type_name());
    }
    const auto& name = name_field->get_ref<const std::string&>();
    const auto command = commands.find(name);
    if (command == commands.end()) {
        return failure("unknown command '" + name + "'");
    }
    // Any exception is turned into a reply: a faulty command must neither end
    // the serving thread nor leave the client waiting.
    try {
        json reply = command->second(request);
        if (reply.is_null()) {
            reply = json::object();
        }
        if (!reply.is_object()) {
            return failure("command '" + name + "' produced a " + reply.type_name() +
                           " instead of an object");
        }
        reply["ok"] = true;
        return reply;
    } catch (const CommandError& error) {
        return failure(error.what());
    } catch (const std::exception& error) {
        return failure("command '" + name + "' failed: " + error.what());
    } catch (...) {
        return failure("command '" + name + "' failed with an unknown exception");
    }
}

}  // namespace

std::string dispatch_line(const CommandTable& commands, std::string_view line) {
    return to_line(run(commands, line));
}

std::string error_line(std::string_view message) { return to_line(failure(message)); }

}  // namespace vim::vmm::control
