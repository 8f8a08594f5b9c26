#include "controller/vimd/server.h"

#include <httplib.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <string_view>

#include "controller/api/validation.h"
#include "controller/common/bearer_token.h"
#include "service.h"
#include "vmm/sys/error.h"

// Replaces httplib's own, which waits for a keep-alive connection's next request by polling it every 10 ms
// and sleeping 1 ms after each empty poll: each idle client woke its thread twice per 11 ms (64 idle clients:
// some 11,000 wake-ups a second, on the cores that serve requests), and a request that came during the
// sleep waited for it to end. This one sleeps in poll() until the request comes or the keep-alive timeout
// passes, which is what the library's callers expect: true when the socket is readable (or closed: the
// read that follows says so), false at the timeout. The library calls it through its PLT, so the
// executable's definition takes its place; the version check makes an upgrade of the library revisit it.
static_assert(std::string_view(CPPHTTPLIB_VERSION) == "0.11.4",
              "check that httplib::detail::keep_alive still has this signature and meaning");
namespace httplib::detail {
bool keep_alive(socket_t sock, time_t keep_alive_timeout_sec) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(keep_alive_timeout_sec);
    for (;;) {
        const auto left =
            std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd readable{.fd = sock, .events = POLLIN, .revents = 0};
        const int ready = ::poll(&readable, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
        if (ready >= 0 || errno != EINTR) {
            return ready > 0;
        }
    }
}
}  // namespace httplib::detail

namespace vim::controller::vimd {

namespace {

// Past this, an oversized JSON body is not even drained: the connection is closed instead.
constexpr std::size_t kDrainLimitBytes = 64 << 20;

// "/v1/vms/{id}" -> "/v1/vms/([^/]+)", the form httplib routes by.
std::string path_regex(const std::string& path) {
    std::string regex;
    for (std::size_t at = 0; at < path.size();) {
        if (path[at] == '{') {
            regex += "([^/]+)";
            at = path.find('}', at) + 1;
        } else {
            regex += path[at++];
        }
    }
    return regex;
}

// Whether a request path fits a route's path: the same segments, a {parameter} fitting any non-empty one.
bool path_matches(std::string_view pattern, std::string_view path) {
    while (!pattern.empty() && !path.empty()) {
        const auto pattern_end = std::min(pattern.find('/', 1), pattern.size());
        const auto path_end = std::min(path.find('/', 1), path.size());
        const auto pattern_segment = pattern.substr(0, pattern_end);
        const auto path_segment = path.substr(0, path_end);
        const bool parameter = pattern_segment.starts_with("/{");
        if (parameter ? path_segment.size() <= 1 : pattern_segment != path_segment) {
            return false;
        }
        pattern.remove_prefix(pattern_end);
        path.remove_prefix(path_end);
    }
    return pattern.empty() && path.empty();
}

// The API's name for a field a store error names.
std::string api_field(const std::string& store_field) {
    static const std::map<std::string, std::string> names = {
        {"vlan_id", "vlan"},   {"key", "Idempotency-Key"},          {"host_id", "host"},
        {"image_id", "image"}, {"server_group_id", "server_group"}, {"network_id", "nics.network"}};
    const auto it = names.find(store_field);
    return it == names.end() ? store_field : it->second;
}

// 0 when absent or not a number (httplib has refused those already).
std::uint64_t content_length(const httplib::Request& request) {
    const std::string text = request.get_header_value("Content-Length");
    std::uint64_t length = 0;
    const auto parsed = std::from_chars(text.data(), text.data() + text.size(), length);
    return parsed.ec == std::errc::result_out_of_range ? UINT64_MAX : length;
}

std::string status_text(int status) {
    switch (status) {
    case 400:
        return "bad request";
    case 404:
        return "not found";
    case 405:
        return "method not allowed";
    case 413:
        return "body too large";
    case 414:
        return "URI too long";
    default:
        return "HTTP status " + std::to_string(status);
    }
}

}  // namespace

struct Server::Impl {
    explicit Impl(Config configuration) : config(std::move(configuration)), service(config) { configure(); }

    void configure();
    void handle(const Service::RouteHandler& route, const httplib::Request& request,
                httplib::Response& response, const httplib::ContentReader* reader);
    void read_json_body(Call& call, const httplib::ContentReader& reader) const;
    void discard_body(const httplib::Request& request, httplib::Response& response,
                      const httplib::ContentReader& reader) const;
    bool authorized(const httplib::Request& request) const {
        return !config.token || bearer_matches(request.get_header_value("Authorization"), *config.token);
    }
    // The routes whose path matches, whatever their method.
    std::vector<const Service::RouteHandler*> routes_for(const std::string& path) const {
        std::vector<const Service::RouteHandler*> found;
        for (const auto& route : Service::route_table()) {
            if (path_matches(route.path, path)) {
                found.push_back(&route);
            }
        }
        return found;
    }

    Config config;
    Service service;
    httplib::Server http;
    int port = -1;
    int listening_fd = -1;
};

void Server::Impl::configure() {
    const std::size_t threads = config.http_threads;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_tcp_nodelay(true);
    // Keeps the listening socket so bind() can lengthen its backlog: httplib listens with a backlog of
    // 5, and a burst of clients connecting at once would otherwise wait for SYN retransmissions.
    http.set_socket_options([this](socket_t socket) {
        httplib::default_socket_options(socket);
        listening_fd = socket;
    });
    http.set_keep_alive_max_count(100000);
    // Uploads stream to disk under their own limit; JSON bodies are bounded in read_json_body().
    http.set_payload_max_length(config.max_image_bytes);

    for (const auto& route : Service::route_table()) {
        const std::string pattern = path_regex(route.path);
        const auto* entry = &route;
        if (route.method == "GET") {
            http.Get(pattern, [this, entry](const httplib::Request& request, httplib::Response& response) {
                handle(*entry, request, response, nullptr);
            });
            continue;
        }
        // Every route with a body reads it through a ContentReader, so no body is ever buffered whole
        // before its size is checked.
        httplib::Server::HandlerWithContentReader handler =
            [this, entry](const httplib::Request& request, httplib::Response& response,
                          const httplib::ContentReader& reader) {
                handle(*entry, request, response, &reader);
            };
        if (route.method == "POST") {
            http.Post(pattern, handler);
        } else if (route.method == "PATCH") {
            http.Patch(pattern, handler);
        } else if (route.method == "DELETE") {
            http.Delete(pattern, handler);
        } else if (route.method == "PUT") {
            http.Put(pattern, handler);
        }
    }

    // A request for no route is answered before its body is read (httplib would buffer it whole).
    http.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
        if (request.method == "GET" || request.method == "HEAD") {
            return httplib::Server::HandlerResponse::Unhandled;
        }
        const auto candidates = routes_for(request.path);
        for (const auto* route : candidates) {
            if (route->method == request.method) {
                return httplib::Server::HandlerResponse::Unhandled;
            }
        }
        const int status = candidates.empty() ? 404 : 405;
        Service::reply_error(response, status, "no route for " + request.method + " " + request.path);
        response.set_header("Connection", "close");
        service.observe_request("(unknown)", request.method, status, std::chrono::nanoseconds(0));
        return httplib::Server::HandlerResponse::Handled;
    });

    // httplib calls this for every status >= 400; only its own answers (unrouted paths, unreadable
    // requests) come without a body.
    const httplib::Server::HandlerWithResponse error_handler = [this](const httplib::Request& request,
                                                                      httplib::Response& response) {
        if (!response.body.empty()) {
            return httplib::Server::HandlerResponse::Unhandled;
        }
        if (response.status == 404 && !request.path.empty()) {
            std::string allowed;
            for (const auto* route : routes_for(request.path)) {
                allowed += (allowed.empty() ? "" : ", ") + route->method;
            }
            if (!allowed.empty()) {
                response.status = 405;
                response.set_header("Allow", allowed);
            }
        }
        const std::string what = response.status == 404 || response.status == 405
                                     ? "no route for " + request.method + " " + request.path
                                     : status_text(response.status);
        Service::reply_error(response, response.status, what);
        return httplib::Server::HandlerResponse::Handled;
    };
    http.set_error_handler(error_handler);

    http.set_exception_handler(
        [](const httplib::Request& request, httplib::Response& response, std::exception_ptr error) {
            std::string what = "unknown error";
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& exception) {
                what = exception.what();
            } catch (...) {
            }
            spdlog::error("{} {}: {}", request.method, request.path, what);
            Service::reply_error(response, 500, "internal error: " + what);
        });
}

// A body nobody read is read and dropped (up to a limit), so that the client, still sending it, reads
// the answer rather than a connection reset.
void Server::Impl::discard_body(const httplib::Request& request, httplib::Response& response,
                                const httplib::ContentReader& reader) const {
    if (content_length(request) > kDrainLimitBytes ||
        request.get_header_value("Transfer-Encoding") == "chunked") {
        response.set_header("Connection", "close");
        return;
    }
    reader([](const char*, std::size_t) { return true; });
}

void Server::Impl::read_json_body(Call& call, const httplib::ContentReader& reader) const {
    if (content_length(call.request) > kDrainLimitBytes) {
        call.response.set_header("Connection", "close");
        throw HttpError(413,
                        "body: more than the limit of " + std::to_string(config.max_body_bytes) + " bytes");
    }
    std::size_t seen = 0;
    bool too_large = false;
    const bool complete = reader([&](const char* data, std::size_t size) {
        seen += size;
        if (seen > config.max_body_bytes) {
            too_large = true;
            call.body.clear();
            return seen <= kDrainLimitBytes;  // drained, so the client reads our answer rather than a reset
        }
        call.body.append(data, size);
        return true;
    });
    if (too_large) {
        throw HttpError(413,
                        "body: more than the limit of " + std::to_string(config.max_body_bytes) + " bytes");
    }
    if (!complete) {
        throw HttpError(400, "body: the request ended before its body did");
    }
}

void Server::Impl::handle(const Service::RouteHandler& route, const httplib::Request& request,
                          httplib::Response& response, const httplib::ContentReader* reader) {
    const auto started = std::chrono::steady_clock::now();
    Call call{.request = request, .response = response};
    for (std::size_t i = 1; i < request.matches.size(); ++i) {
        call.parameters.push_back(request.matches[i].str());
    }
    try {
        if (route.path != "/healthz" && !authorized(request)) {
            response.set_header("WWW-Authenticate", "Bearer");
            throw HttpError(401, "authentication required: send Authorization: Bearer <token>");
        }
        if (reader != nullptr && route.streams_body) {
            call.reader = reader;
        } else if (reader != nullptr) {
            call.body_read = true;
            read_json_body(call, *reader);
        }
        (service.*route.handler)(call);
    } catch (const HttpError& error) {
        Service::reply_error(response, error.status(), error.what());
    } catch (const api::ValidationError& error) {
        Service::reply_error(response, 400, error.what());
    } catch (const scheduler::NoValidHostError& error) {
        const std::string reason = error.what();
        const std::string prefix = "no host can take the vm";
        Service::reply_error(response, 409, reason.starts_with(prefix) ? reason : prefix + ": " + reason);
    } catch (const store::NotFoundError& error) {
        const bool named = error.field() == "id";
        Service::reply_error(response, 404,
                             named ? error.what() : api_field(error.field()) + ": " + error.what());
    } catch (const store::ClaimRejectedError& error) {
        Service::reply_error(response, 409, error.what());
    } catch (const store::ConflictError& error) {
        Service::reply_error(response, 409, api_field(error.field()) + ": " + error.what());
    } catch (const store::InvalidArgumentError& error) {
        Service::reply_error(response, 400, error.what());
    } catch (const std::exception& error) {
        spdlog::error("{} {}: {}", request.method, request.path, error.what());
        Service::reply_error(response, 500, std::string("internal error: ") + error.what());
    }
    if (reader != nullptr && !call.body_read) {
        discard_body(request, response, *reader);
    }
    const auto elapsed = std::chrono::steady_clock::now() - started;
    // A handler that streams content leaves the status to httplib: 200, or 206 for a Range.
    const int status = response.status != -1 ? response.status : request.ranges.empty() ? 200 : 206;
    service.observe_request(route.path, route.method, status, elapsed);
    spdlog::debug("{} {} -> {} ({} us)", request.method, request.path, status,
                  std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
}

Server::Server(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Server::~Server() {
    stop();
    impl_->service.stop();
}

int Server::bind() {
    auto& impl = *impl_;
    const auto& host = impl.config.listen_host;
    if (impl.config.listen_port == 0) {
        impl.port = impl.http.bind_to_any_port(host);
    } else if (impl.http.bind_to_port(host, impl.config.listen_port)) {
        impl.port = impl.config.listen_port;
    }
    if (impl.port > 0 && ::listen(impl.listening_fd, SOMAXCONN) != 0) {
        vmm::sys::throw_errno("listen " + host + ":" + std::to_string(impl.port));
    }
    if (impl.port <= 0) {
        throw std::runtime_error("listen " + host + ":" + std::to_string(impl.config.listen_port) +
                                 ": cannot bind (address in use or not local?)");
    }
    impl.service.set_advertised_url(impl.config.advertise_url.empty()
                                        ? "http://" + host + ":" + std::to_string(impl.port)
                                        : impl.config.advertise_url);
    return impl.port;
}

void Server::serve() { impl_->http.listen_after_bind(); }

void Server::stop() { impl_->http.stop(); }

}  // namespace vim::controller::vimd
