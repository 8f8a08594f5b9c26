#include "controller/vimctl/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include "controller/api/types.h"
#include "controller/common/bearer_token.h"
#include "controller/common/sha256.h"
#include "controller/vimctl/api_client.h"
#include "table.h"

namespace vim::controller::vimctl {

namespace {

constexpr int kFailed = 1;
constexpr int kUsage = 2;

struct Options {
    std::string controller = "http://127.0.0.1:8470";
    std::string token_file;
    bool json = false;
};

std::string read_token(const std::string& path) {
    try {
        return read_token_file(path);
    } catch (const std::runtime_error& error) {
        throw ApiError(0, error.what());
    }
}

std::string file_sha256(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw ApiError(0, "image file " + path.string() + ": cannot be read");
    }
    Sha256 digest;
    std::vector<char> buffer(1 << 20);
    while (file.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || file.gcount() > 0) {
        digest.update({buffer.data(), static_cast<std::size_t>(file.gcount())});
    }
    return digest.finish_hex();
}

// A progress bar on stderr when it is a terminal; nothing otherwise (scripts read stdout).
class ProgressBar {
public:
    ProgressBar() : enabled_(::isatty(STDERR_FILENO) != 0) {}
    void show(int percent, const std::string& label) {
        if (!enabled_) {
            return;
        }
        percent = std::clamp(percent, 0, 100);
        const int filled = percent * 30 / 100;
        std::cerr << "\r[" << std::string(filled, '#') << std::string(30 - filled, ' ') << "] " << percent
                  << "% " << label << "\033[K" << std::flush;
        shown_ = true;
    }
    void done() {
        if (shown_) {
            std::cerr << "\n";
        }
        shown_ = false;
    }

private:
    bool enabled_;
    bool shown_ = false;
};

class Cli {
public:
    explicit Cli(CLI::App& app) { define(app); }

    // The action the parsed command line chose.
    std::function<void()> action;

private:
    ApiClient client() const {
        std::optional<std::string> token;
        if (!options_.token_file.empty()) {
            token = read_token(options_.token_file);
        }
        return ApiClient(options_.controller, token);
    }

    void print_json(const nlohmann::json& value) const { std::cout << value.dump(2) << "\n"; }

    void show(const nlohmann::json& record) const {
        if (options_.json) {
            print_json(record);
        } else {
            print_record(std::cout, record);
        }
    }

    void list(const nlohmann::json& page, const std::vector<Column>& columns) const {
        if (options_.json) {
            print_json(page);
            return;
        }
        print_table(std::cout, columns, page.at("items"));
        if (!page.value("next_page_token", "").empty()) {
            std::cout << "(more: --page-token " << page["next_page_token"].get<std::string>() << ")\n";
        }
    }

    // Prints an accepted action's operation, and with --wait follows it to its end.
    void accepted(const nlohmann::json& reply, bool wait) const {
        const auto& operation = reply.at("operation");
        if (!wait) {
            if (options_.json) {
                print_json(reply);
            } else {
                std::cout << "operation " << operation.at("id").get<std::string>() << " "
                          << operation.at("kind").get<std::string>() << " "
                          << operation.at("state").get<std::string>() << "\n";
            }
            return;
        }
        follow(operation.at("id").get<std::string>(), wait_timeout_s_);
    }

    // Polls an operation until it ends; throws when it failed or the wait timed out.
    void follow(const std::string& id, double timeout_s) const {
        const auto api = client();
        ProgressBar bar;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        for (;;) {
            const auto operation = api.get("/v1/operations/" + id);
            const std::string state = operation.at("state").get<std::string>();
            bar.show(operation.value("progress", 0), operation.value("kind", "") + " " + state);
            if (state == "succeeded" || state == "failed") {
                bar.done();
                if (options_.json) {
                    print_json(operation);
                } else {
                    std::cout << "operation " << id << " " << operation.value("kind", "") << " " << state
                              << "\n";
                }
                if (state == "failed") {
                    throw ApiError(0, "operation " + id + " failed: " + operation.value("error", ""));
                }
                return;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                bar.done();
                throw ApiError(
                    0, "operation " + id + " still " + state + " after " + std::to_string(timeout_s) + " s");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }

    void add_page_options(CLI::App* command) {
        command->add_option("--limit", limit_, "items per page (1-1000)");
        command->add_option("--page-token", page_token_, "the next page, as a previous list said");
    }
    std::map<std::string, std::string> page_query() const {
        std::map<std::string, std::string> query;
        if (limit_ > 0) {
            query["limit"] = std::to_string(limit_);
        }
        if (!page_token_.empty()) {
            query["page_token"] = page_token_;
        }
        return query;
    }
    void add_wait_option(CLI::App* command) {
        command->add_flag("--wait", wait_, "wait for the operation to finish (exit 1 if it fails)");
        command->add_option("--timeout", wait_timeout_s_, "seconds to wait with --wait")
            ->capture_default_str();
    }

    void define(CLI::App& app);
    void define_hosts(CLI::App& app);
    void define_images(CLI::App& app);
    void define_vms(CLI::App& app);
    void define_groups(CLI::App& app);
    void define_networks(CLI::App& app);
    void define_operations(CLI::App& app);

    Options options_;
    std::string name_;
    std::string text_;
    std::string file_;
    std::size_t limit_ = 0;
    std::string page_token_;
    bool wait_ = false;
    double wait_timeout_s_ = 300;
    std::map<std::string, std::string> filters_;
    api::VmCreate vm_;
    std::vector<std::uint64_t> disks_;
    std::vector<std::string> nics_;
    std::string idempotency_key_;
    api::NetworkCreate network_;
};

void Cli::define(CLI::App& app) {
    app.add_option("--controller", options_.controller, "the controller's URL")
        ->envname("VIM_CONTROLLER")
        ->capture_default_str();
    app.add_option("--token-file", options_.token_file, "a file holding the bearer token")
        ->envname("VIM_TOKEN_FILE");
    app.add_flag("--json", options_.json, "print the controller's JSON instead of tables");
    app.require_subcommand(1);
    define_hosts(app);
    define_images(app);
    define_vms(app);
    define_groups(app);
    define_networks(app);
    define_operations(app);
}

void Cli::define_hosts(CLI::App& app) {
    auto* host = app.add_subcommand("host", "physical hosts")->require_subcommand(1);
    const std::vector<Column> columns = {
        field_column("NAME", "name"),
        field_column("STATE", "state"),
        {"VCPUS",
         [](const nlohmann::json& h) {
             return cell_text(h["used"]["vcpus"]) + "/" + cell_text(h["usable"]["vcpus"]);
         }},
        {"MEMORY_MIB",
         [](const nlohmann::json& h) {
             return cell_text(h["used"]["memory_mib"]) + "/" + cell_text(h["usable"]["memory_mib"]);
         }},
        field_column("AGENT", "agent_url")};
    auto* list = host->add_subcommand("list", "list hosts");
    add_page_options(list);
    list->callback([this, columns] {
        action = [this, columns] { this->list(client().get("/v1/hosts", page_query()), columns); };
    });
    auto* show = host->add_subcommand("show", "show a host");
    show->add_option("name", name_, "host name or id")->required();
    show->callback([this] { action = [this] { this->show(client().get("/v1/hosts/" + name_)); }; });
    auto* maintenance = host->add_subcommand(
        "maintenance", "put a host in or out of maintenance (on: its running VMs are live-migrated off it)");
    maintenance->add_option("name", name_, "host name or id")->required();
    maintenance->add_option("state", text_, "on or off")->required()->check(CLI::IsMember({"on", "off"}));
    add_wait_option(maintenance);
    maintenance->callback([this] {
        action = [this] {
            const auto reply =
                client().patch("/v1/hosts/" + name_, api::HostUpdate{.maintenance = text_ == "on"}.to_json());
            if (!reply.contains("operation")) {
                this->show(reply);  // nothing to move
                return;
            }
            if (!options_.json) {
                std::cout << "host " << reply.at("host").at("name").get<std::string>()
                          << " in maintenance: evacuating its running VMs\n";
            }
            accepted(reply, wait_);
        };
    });
    for (const bool enable : {true, false}) {
        auto* command =
            host->add_subcommand(enable ? "enable" : "disable",
                                 enable ? "let the scheduler use a host" : "keep the scheduler off a host");
        command->add_option("name", name_, "host name or id")->required();
        command->callback([this, enable] {
            action = [this, enable] {
                this->show(
                    client().patch("/v1/hosts/" + name_, api::HostUpdate{.enabled = enable}.to_json()));
            };
        });
    }
    auto* remove = host->add_subcommand("remove", "forget a host (refused while VMs are on it)");
    remove->add_option("name", name_, "host name or id")->required();
    remove->callback([this] {
        action = [this] {
            client().remove("/v1/hosts/" + name_);
            if (!options_.json) {
                std::cout << "host " << name_ << " removed\n";
            }
        };
    });
}

void Cli::define_images(CLI::App& app) {
    auto* image = app.add_subcommand("image", "VM images")->require_subcommand(1);
    auto* upload = image->add_subcommand("upload", "upload an image file (checked by its sha256)");
    upload->add_option("file", file_, "the image file")->required()->check(CLI::ExistingFile);
    upload->add_option("--name", name_, "the image's name (default: the file's name)");
    upload->callback([this] {
        action = [this] {
            const std::filesystem::path path(file_);
            const std::string name = name_.empty() ? path.filename().string() : name_;
            ProgressBar bar;
            const auto reply = client().upload(
                "/v1/images", {{"name", name}, {"sha256", file_sha256(path)}}, path,
                [&bar](std::uint64_t sent, std::uint64_t total) {
                    bar.show(total == 0 ? 100 : static_cast<int>(sent * 100 / total), "upload");
                });
            bar.done();
            this->show(reply);
        };
    });
    auto* download = image->add_subcommand("download", "download an image's content to a file");
    download->add_option("name", name_, "image name or id")->required();
    download->add_option("file", file_, "where to write it")->required();
    download->callback(
        [this] { action = [this] { client().download("/v1/images/" + name_ + "/content", file_); }; });
    auto* list = image->add_subcommand("list", "list images");
    add_page_options(list);
    list->callback([this] {
        action = [this] {
            this->list(
                client().get("/v1/images", page_query()),
                {field_column("NAME", "name"),
                 field_column("SIZE_BYTES", "size_bytes"),
                 field_column("STATUS", "status"),
                 {"SHA256", [](const nlohmann::json& i) { return cell_text(i["sha256"]).substr(0, 16); }}});
        };
    });
    auto* show = image->add_subcommand("show", "show an image");
    show->add_option("name", name_, "image name or id")->required();
    show->callback([this] { action = [this] { this->show(client().get("/v1/images/" + name_)); }; });
    auto* remove = image->add_subcommand("delete", "delete an image (refused while a VM uses it)");
    remove->add_option("name", name_, "image name or id")->required();
    remove->callback([this] {
        action = [this] {
            client().remove("/v1/images/" + name_);
            if (!options_.json) {
                std::cout << "image " << name_ << " deleted\n";
            }
        };
    });
}

void Cli::define_vms(CLI::App& app) {
    auto* vm = app.add_subcommand("vm", "virtual machines")->require_subcommand(1);
    auto* create = vm->add_subcommand("create", "create a VM (placed by the scheduler)");
    create->add_option("name", vm_.name, "the VM's name")->required();
    create->add_option("--vcpus", vm_.vcpus, "virtual CPUs")->required();
    create->add_option("--memory-mib", vm_.memory_mib, "memory in MiB")->required();
    create->add_option("--image", vm_.image, "the image to boot")->required();
    create->add_option("--disk", disks_, "an extra disk of this many GiB (repeatable)");
    create->add_option("--nic", nics_, "a NIC on this network (repeatable)");
    create->add_option("--group", text_, "the server group");
    create->add_option("--host-affinity", vm_.host_affinity, "only on these hosts");
    create->add_option("--host-anti-affinity", vm_.host_anti_affinity, "never on these hosts");
    create->add_option("--cpu-feature", vm_.cpu_features, "a CPU feature the host must have (repeatable)");
    create->add_option("--idempotency-key", idempotency_key_, "retries with the same key create one VM");
    add_wait_option(create);
    create->callback([this] {
        action = [this] {
            for (const auto size : disks_) {
                vm_.disks.push_back({.size_gib = size});
            }
            for (const auto& network : nics_) {
                vm_.nics.push_back({.network = network});
            }
            if (!text_.empty()) {
                vm_.server_group = text_;
            }
            std::map<std::string, std::string> headers;
            if (!idempotency_key_.empty()) {
                headers["Idempotency-Key"] = idempotency_key_;
            }
            accepted(client().post("/v1/vms", vm_.to_json(), headers), wait_);
        };
    });
    auto* list = vm->add_subcommand("list", "list VMs");
    for (const char* filter : {"state", "host", "image", "server_group", "network", "name_prefix"}) {
        std::string flag = std::string("--") + filter;
        std::replace(flag.begin(), flag.end(), '_', '-');
        list->add_option_function<std::string>(
            flag, [this, filter](const std::string& value) { filters_[filter] = value; },
            std::string("only VMs whose ") + filter + " is this");
    }
    add_page_options(list);
    list->callback([this] {
        action = [this] {
            auto query = page_query();
            query.insert(filters_.begin(), filters_.end());
            this->list(client().get("/v1/vms", query), {field_column("NAME", "name"),
                                                        field_column("STATE", "state"),
                                                        field_column("HOST", "host"),
                                                        field_column("VCPUS", "vcpus"),
                                                        field_column("MEMORY_MIB", "memory_mib"),
                                                        {"IP", [](const nlohmann::json& v) {
                                                             std::string ips;
                                                             for (const auto& nic : v["nics"]) {
                                                                 ips += (ips.empty() ? "" : ",") +
                                                                        cell_text(nic["ip"]);
                                                             }
                                                             return ips;
                                                         }}});
        };
    });
    auto* show = vm->add_subcommand("show", "show a VM");
    show->add_option("name", name_, "VM name or id")->required();
    show->callback([this] { action = [this] { this->show(client().get("/v1/vms/" + name_)); }; });
    for (const char* verb : {"start", "stop", "reboot", "adopt"}) {
        auto* command = vm->add_subcommand(verb, std::string(verb) == "adopt"
                                                     ? std::string("manage an unmanaged VM from now on")
                                                     : std::string(verb) + " a VM");
        command->add_option("name", name_, "VM name or id")->required();
        add_wait_option(command);
        command->callback([this, verb] {
            action = [this, verb] {
                accepted(client().post("/v1/vms/" + name_ + "/" + verb, nlohmann::json::object()), wait_);
            };
        });
    }
    auto* remove = vm->add_subcommand("delete", "delete a VM");
    remove->add_option("name", name_, "VM name or id")->required();
    add_wait_option(remove);
    remove->callback([this] { action = [this] { accepted(client().remove("/v1/vms/" + name_), wait_); }; });
    auto* migrate = vm->add_subcommand("migrate", "live-migrate a VM");
    migrate->add_option("name", name_, "VM name or id")->required();
    migrate->add_option("--host", text_, "the target host (default: the best one)");
    add_wait_option(migrate);
    migrate->callback([this] {
        action = [this] {
            api::VmMigrate request;
            if (!text_.empty()) {
                request.host = text_;
            }
            accepted(client().post("/v1/vms/" + name_ + "/migrate", request.to_json()), wait_);
        };
    });
    auto* snapshot = vm->add_subcommand("snapshot", "snapshot a VM on its host");
    snapshot->add_option("name", name_, "VM name or id")->required();
    snapshot->add_option("--name", text_, "the snapshot's name");
    add_wait_option(snapshot);
    snapshot->callback([this] {
        action = [this] {
            api::VmSnapshot request;
            if (!text_.empty()) {
                request.name = text_;
            }
            accepted(client().post("/v1/vms/" + name_ + "/snapshot", request.to_json()), wait_);
        };
    });
}

void Cli::define_groups(CLI::App& app) {
    auto* group = app.add_subcommand("group", "server groups")->require_subcommand(1);
    auto* create = group->add_subcommand("create", "create a server group");
    create->add_option("name", name_, "the group's name")->required();
    create->add_option("--policy", text_, "affinity, anti-affinity, soft-affinity or soft-anti-affinity")
        ->required()
        ->check(CLI::IsMember({"affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"}));
    create->callback([this] {
        action = [this] {
            this->show(client().post("/v1/server-groups", {{"name", name_}, {"policy", text_}}));
        };
    });
    auto* list = group->add_subcommand("list", "list server groups");
    add_page_options(list);
    list->callback([this] {
        action = [this] {
            this->list(
                client().get("/v1/server-groups", page_query()),
                {field_column("NAME", "name"), field_column("POLICY", "policy"), field_column("ID", "id")});
        };
    });
    auto* show = group->add_subcommand("show", "show a server group");
    show->add_option("name", name_, "group name or id")->required();
    show->callback([this] { action = [this] { this->show(client().get("/v1/server-groups/" + name_)); }; });
    auto* remove = group->add_subcommand("delete", "delete a server group (refused while it has members)");
    remove->add_option("name", name_, "group name or id")->required();
    remove->callback([this] {
        action = [this] {
            client().remove("/v1/server-groups/" + name_);
            if (!options_.json) {
                std::cout << "server group " << name_ << " deleted\n";
            }
        };
    });
}

void Cli::define_networks(CLI::App& app) {
    auto* network = app.add_subcommand("network", "isolated networks")->require_subcommand(1);
    auto* create = network->add_subcommand("create", "create a network");
    create->add_option("name", network_.name, "the network's name")->required();
    create->add_option("--vlan", network_.vlan, "its VLAN id (1-4094, unique)")->required();
    create->add_option("--cidr", network_.cidr, "its IPv4 address pool, e.g. 10.1.0.0/24")->required();
    create->callback(
        [this] { action = [this] { this->show(client().post("/v1/networks", network_.to_json())); }; });
    auto* list = network->add_subcommand("list", "list networks");
    add_page_options(list);
    list->callback([this] {
        action = [this] {
            this->list(client().get("/v1/networks", page_query()),
                       {field_column("NAME", "name"), field_column("VLAN", "vlan"),
                        field_column("CIDR", "cidr"), field_column("GATEWAY", "gateway")});
        };
    });
    auto* show = network->add_subcommand("show", "show a network");
    show->add_option("name", name_, "network name or id")->required();
    show->callback([this] { action = [this] { this->show(client().get("/v1/networks/" + name_)); }; });
    auto* remove = network->add_subcommand("delete", "delete a network (refused while a NIC is on it)");
    remove->add_option("name", name_, "network name or id")->required();
    remove->callback([this] {
        action = [this] {
            client().remove("/v1/networks/" + name_);
            if (!options_.json) {
                std::cout << "network " << name_ << " deleted\n";
            }
        };
    });
}

void Cli::define_operations(CLI::App& app) {
    auto* operation =
        app.add_subcommand("operation", "long actions and their results")->require_subcommand(1);
    auto* show = operation->add_subcommand("show", "show an operation");
    show->add_option("id", name_, "operation id")->required();
    show->callback([this] { action = [this] { this->show(client().get("/v1/operations/" + name_)); }; });
    auto* wait = operation->add_subcommand("wait", "wait for an operation to finish (exit 1 if it failed)");
    wait->add_option("id", name_, "operation id")->required();
    wait->add_option("--timeout", wait_timeout_s_, "seconds to wait")->capture_default_str();
    wait->callback([this] { action = [this] { follow(name_, wait_timeout_s_); }; });
    auto* list = operation->add_subcommand("list", "recent operations, newest first");
    list->add_option_function<std::string>(
        "--state", [this](const std::string& value) { filters_["state"] = value; },
        "pending, running, succeeded or failed");
    add_page_options(list);
    list->callback([this] {
        action = [this] {
            auto query = page_query();
            query.insert(filters_.begin(), filters_.end());
            this->list(client().get("/v1/operations", query),
                       {field_column("ID", "id"), field_column("KIND", "kind"),
                        field_column("STATE", "state"), field_column("PROGRESS", "progress"),
                        field_column("TARGET", "target_id"), field_column("ERROR", "error")});
        };
    });
}

}  // namespace

int run(int argc, char** argv) {
    CLI::App app{"vimctl: the command line of the virtual infrastructure manager's controller"};
    Cli cli(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        const int code = app.exit(error);
        return code == 0 ? 0 : kUsage;
    }
    try {
        cli.action();
        return 0;
    } catch (const ApiError& error) {
        std::cerr << "error: " << error.what() << "\n";
        return kFailed;
    } catch (const std::exception& error) {
        std::cerr << "error: " << error.what() << "\n";
        return kFailed;
    }
}

}  // namespace vim::controller::vimctl
