#include "controller/store/sqlite_store.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <type_traits>
#include <unordered_set>
#include <variant>

#include "ipv4.h"
#include "schema.h"
#include "sqlite.h"

namespace vim::controller::store {

namespace {

using Json = nlohmann::json;

std::string in_quotes(const std::string& text) { return "\"" + text + "\""; }

std::string strings_to_json(const auto& strings) { return Json(strings).dump(); }

template <typename Container>
Container strings_from_json(const std::string& text) {
    Container strings;
    for (const auto& item : Json::parse(text)) {
        strings.insert(strings.end(), item.get<std::string>());
    }
    return strings;
}

std::string numa_to_json(const std::vector<NumaNode>& nodes) {
    Json array = Json::array();
    for (const auto& node : nodes) {
        array.push_back({{"id", node.id}, {"vcpus", node.vcpus}, {"memory_mib", node.memory_mib}});
    }
    return array.dump();
}

std::vector<NumaNode> numa_from_json(const std::string& text) {
    std::vector<NumaNode> nodes;
    for (const auto& item : Json::parse(text)) {
        nodes.push_back({item.at("id").get<int>(), item.at("vcpus").get<std::int64_t>(),
                         item.at("memory_mib").get<std::int64_t>()});
    }
    return nodes;
}

std::string nics_to_json(const std::vector<Nic>& nics) {
    Json array = Json::array();
    for (const auto& nic : nics) {
        array.push_back({{"network_id", nic.network_id}, {"mac", nic.mac}, {"ip", nic.ip}});
    }
    return array.dump();
}

std::vector<Nic> nics_from_json(const std::string& text) {
    std::vector<Nic> nics;
    for (const auto& item : Json::parse(text)) {
        nics.push_back({item.at("network_id").get<std::string>(), item.at("mac").get<std::string>(),
                        item.at("ip").get<std::string>()});
    }
    return nics;
}

// A keyset page: items after (or, newest first, before) the token's seq.
std::int64_t parse_page_token(const PageRequest& page) {
    if (page.limit < 1 || page.limit > kMaxPageLimit) {
        throw InvalidArgumentError("page limit " + std::to_string(page.limit) + " is not within 1.." +
                                   std::to_string(kMaxPageLimit));
    }
    if (page.page_token.empty()) {
        return -1;
    }
    std::int64_t seq = 0;
    auto [end, error] =
        std::from_chars(page.page_token.data(), page.page_token.data() + page.page_token.size(), seq);
    if (error != std::errc() || end != page.page_token.data() + page.page_token.size() || seq < 0) {
        throw InvalidArgumentError("page token " + in_quotes(page.page_token) + " is not valid");
    }
    return seq;
}

using Parameter = std::variant<std::int64_t, std::string>;

// A SELECT with optional conditions, built per call; its text is one of few shapes, so the
// connection's statement cache still holds it.
struct Query {
    std::vector<std::string> conditions;
    std::vector<Parameter> parameters;

    // Every '?' in the condition stands for the one value.
    void where(const std::string& condition_with_placeholders, Parameter value) {
        parameters.push_back(std::move(value));
        std::string numbered = "?" + std::to_string(parameters.size());
        std::string condition;
        for (char c : condition_with_placeholders) {
            condition += c == '?' ? numbered : std::string(1, c);
        }
        conditions.push_back(condition);
    }
};

constexpr const char* kHostColumns =
    "id, name, agent_url, enabled, maintenance, last_heartbeat_ms, capacity_vcpus, capacity_memory_mib, "
    "capacity_disk_gib, ratio_cpu, ratio_ram, ratio_disk, reserved_vcpus, reserved_memory_mib, "
    "reserved_disk_gib, cpu_features, numa_nodes, inventory, metrics, tags, created_ms, updated_ms";
constexpr int kHostColumnCount = 22;
constexpr const char* kImageColumns = "id, name, size_bytes, status, created_ms";
constexpr int kImageColumnCount = 5;
constexpr const char* kGroupColumns = "id, name, policy, created_ms";
constexpr int kGroupColumnCount = 4;
constexpr const char* kNetworkColumns = "id, name, vlan_id, cidr, created_ms";
constexpr int kNetworkColumnCount = 5;
constexpr const char* kVmColumns =
    "id, name, vcpus, memory_mib, disk_gib, image_id, host_id, numa_node, migration_host_id, "
    "migration_numa_node, state, server_group_id, host_affinity, host_anti_affinity, required_cpu_features, "
    "nics, created_ms, updated_ms";
constexpr int kVmColumnCount = 18;
constexpr const char* kOperationColumns =
    "id, kind, target_id, state, progress, result, error, created_ms, updated_ms, deadline_ms";
constexpr int kOperationColumnCount = 10;

Host read_host(const Connection::Statement& row) {
    Host host;
    host.id = row.text(0);
    host.name = row.text(1);
    host.agent_url = row.text(2);
    host.enabled = row.integer(3) != 0;
    host.maintenance = row.integer(4) != 0;
    host.last_heartbeat_ms = row.integer(5);
    host.capacity = {row.integer(6), row.integer(7), row.integer(8)};
    host.ratios = {row.real(9), row.real(10), row.real(11)};
    host.reserved = {row.integer(12), row.integer(13), row.integer(14)};
    host.cpu_features = strings_from_json<std::set<std::string>>(row.text(15));
    host.numa_nodes = numa_from_json(row.text(16));
    host.inventory = row.text(17);
    host.metrics = row.text(18);
    host.tags = strings_from_json<std::set<std::string>>(row.text(19));
    host.created_ms = row.integer(20);
    host.updated_ms = row.integer(21);
    return host;
}

Image read_image(const Connection::Statement& row) {
    return {row.text(0), row.text(1), row.integer(2), parse_image_status(row.text(3)), row.integer(4)};
}

ServerGroup read_group(const Connection::Statement& row) {
    return {row.text(0), row.text(1), parse_group_policy(row.text(2)), row.integer(3)};
}

Network read_network(const Connection::Statement& row) {
    return {row.text(0), row.text(1), static_cast<int>(row.integer(2)), row.text(3), row.integer(4)};
}

Vm read_vm(const Connection::Statement& row) {
    Vm vm;
    vm.id = row.text(0);
    vm.name = row.text(1);
    vm.vcpus = row.integer(2);
    vm.memory_mib = row.integer(3);
    vm.disk_gib = row.integer(4);
    vm.image_id = row.text(5);
    vm.host_id = row.text(6);
    vm.numa_node = static_cast<int>(row.integer(7));
    vm.migration_host_id = row.text(8);
    vm.migration_numa_node = static_cast<int>(row.integer(9));
    vm.state = parse_vm_state(row.text(10));
    vm.server_group_id = row.text(11);
    vm.host_affinity = strings_from_json<std::vector<std::string>>(row.text(12));
    vm.host_anti_affinity = strings_from_json<std::vector<std::string>>(row.text(13));
    vm.required_cpu_features = strings_from_json<std::set<std::string>>(row.text(14));
    vm.nics = nics_from_json(row.text(15));
    vm.created_ms = row.integer(16);
    vm.updated_ms = row.integer(17);
    return vm;
}

Operation read_operation(const Connection::Statement& row) {
    Operation operation;
    operation.id = row.text(0);
    operation.kind = row.text(1);
    operation.target_id = row.text(2);
    operation.state = parse_operation_state(row.text(3));
    operation.progress = static_cast<int>(row.integer(4));
    operation.result = row.text(5);
    operation.error = row.text(6);
    operation.created_ms = row.integer(7);
    operation.updated_ms = row.integer(8);
    operation.deadline_ms = row.integer(9);
    return operation;
}

template <typename Record, typename Reader>
std::optional<Record> select_one(Connection& connection, const std::string& table, const char* columns,
                                 const char* key, const std::string& value, Reader read) {
    auto statement =
        connection.prepare(std::string("SELECT ") + columns + " FROM " + table + " WHERE " + key + " = ?1");
    statement.bind(1, value);
    if (!statement.step()) {
        return std::nullopt;
    }
    return read(statement);
}

template <typename Record, typename Reader>
Page<Record> select_page(Connection& connection, const std::string& table, const char* columns,
                         int column_count, Query query, const PageRequest& page, bool newest_first,
                         Reader read) {
    std::int64_t after = parse_page_token(page);
    if (after >= 0) {
        query.where(newest_first ? "seq < ?" : "seq > ?", after);
    }
    std::string sql = std::string("SELECT ") + columns + ", seq FROM " + table;
    for (std::size_t i = 0; i < query.conditions.size(); ++i) {
        sql += (i == 0 ? " WHERE " : " AND ") + query.conditions[i];
    }
    sql += newest_first ? " ORDER BY seq DESC" : " ORDER BY seq";
    sql += " LIMIT ?" + std::to_string(query.parameters.size() + 1);
    auto statement = connection.prepare(sql);
    int index = 1;
    for (const auto& parameter : query.parameters) {
        std::visit([&](const auto& value) { statement.bind(index, value); }, parameter);
        ++index;
    }
    statement.bind(index, static_cast<std::int64_t>(page.limit) + 1);
    Page<Record> result;
    std::int64_t last_seq = 0;
    while (statement.step()) {
        if (result.items.size() == page.limit) {
            result.next_page_token = std::to_string(last_seq);
            break;
        }
        result.items.push_back(read(statement));
        last_seq = statement.integer(column_count);
    }
    return result;
}

std::int64_t count(Connection& connection, const std::string& sql, const std::string& value) {
    auto statement = connection.prepare(sql);
    statement.bind(1, value);
    statement.step();
    return statement.integer(0);
}

void require_changed(Connection& connection, const char* noun, const std::string& id) {
    if (connection.changes() == 0) {
        throw NotFoundError("id", std::string(noun) + " " + in_quotes(id) + " not found");
    }
}

std::string format_mac(std::uint32_t low24) {
    char text[18];
    std::snprintf(text, sizeof text, "52:54:00:%02x:%02x:%02x", (low24 >> 16) & 0xff, (low24 >> 8) & 0xff,
                  low24 & 0xff);
    return text;
}

bool is_mac(const std::string& text) {
    if (text.size() != 17) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
        bool separator = i % 3 == 2;
        if (separator ? text[i] != ':' : !std::isxdigit(static_cast<unsigned char>(text[i]))) {
            return false;
        }
    }
    return true;
}

// The host fields a claim is checked against.
struct ClaimHost {
    std::string name;
    bool enabled = false;
    bool maintenance = false;
    Resources usable;
    OvercommitRatios ratios;
    std::set<std::string> cpu_features;
    std::vector<NumaNode> numa_nodes;
};

struct Usage {
    Resources host;
    Resources node;  // of the NUMA node asked about
};

// What the VMs on a host hold (placed there or migrating to it), in total and on one NUMA node.
Usage sum_usage(Connection& connection, const std::string& host_id, int numa_node) {
    // Two covering-index lookups rather than one OR, which SQLite would answer with a table scan.
    Usage usage;
    for (const char* sql :
         {"SELECT COALESCE(SUM(vcpus), 0), COALESCE(SUM(memory_mib), 0), COALESCE(SUM(disk_gib), 0), "
          "COALESCE(SUM(CASE WHEN numa_node = ?2 THEN vcpus END), 0), "
          "COALESCE(SUM(CASE WHEN numa_node = ?2 THEN memory_mib END), 0) FROM vms WHERE host_id = ?1",
          "SELECT COALESCE(SUM(vcpus), 0), COALESCE(SUM(memory_mib), 0), COALESCE(SUM(disk_gib), 0), "
          "COALESCE(SUM(CASE WHEN migration_numa_node = ?2 THEN vcpus END), 0), "
          "COALESCE(SUM(CASE WHEN migration_numa_node = ?2 THEN memory_mib END), 0) FROM vms "
          "WHERE migration_host_id = ?1"}) {
        auto statement = connection.prepare(sql);
        statement.bind(1, host_id).bind(2, numa_node);
        statement.step();
        usage.host.vcpus += statement.integer(0);
        usage.host.memory_mib += statement.integer(1);
        usage.host.disk_gib += statement.integer(2);
        usage.node.vcpus += statement.integer(3);
        usage.node.memory_mib += statement.integer(4);
    }
    return usage;
}

void require_room(const std::string& where, const Resources& usable, const Resources& used,
                  const Resources& wanted) {
    auto check = [&](const char* what, std::int64_t requested, std::int64_t total, std::int64_t taken,
                     const char* unit) {
        std::int64_t free = std::max<std::int64_t>(0, total - taken);
        if (requested > free) {
            throw ClaimRejectedError(where + ": not enough " + what + ": " + std::to_string(requested) +
                                     unit + " requested, " + std::to_string(free) + unit + " free");
        }
    };
    check("vcpus", wanted.vcpus, usable.vcpus, used.vcpus, "");
    check("memory", wanted.memory_mib, usable.memory_mib, used.memory_mib, " MiB");
    check("disk", wanted.disk_gib, usable.disk_gib, used.disk_gib, " GiB");
}

}  // namespace

struct SqliteStore::Impl {
    std::filesystem::path path;
    Options options;
    std::mutex writer_mutex;
    std::unique_ptr<Connection> writer;
    std::mutex readers_mutex;
    std::condition_variable reader_returned;
    std::vector<std::unique_ptr<Connection>> idle_readers;

    std::unique_ptr<Connection> open_connection() const {
        auto connection = std::make_unique<Connection>(path, options.busy_timeout_ms);
        connection->exec("PRAGMA foreign_keys = ON");
        connection->exec(options.durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = OFF");
        // A site's claims touch indexes all over the file: keep it in memory rather than re-reading pages,
        // and read through a mapping rather than a copy per page.
        connection->exec("PRAGMA cache_size = -65536");
        connection->exec("PRAGMA mmap_size = 1073741824");
        // The savepoint of each creation in a batch keeps its undo pages in memory, not a temporary file.
        connection->exec("PRAGMA temp_store = MEMORY");
        return connection;
    }

    // Runs `body` in a write transaction. BEGIN IMMEDIATE takes the write lock first, so what the body
    // reads stays true until COMMIT: the claim checks depend on it.
    template <typename Body>
    auto write(Body&& body) -> std::invoke_result_t<Body, Connection&> {
        std::lock_guard lock(writer_mutex);
        writer->exec("BEGIN IMMEDIATE");
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<Body, Connection&>>) {
                body(*writer);
                writer->exec("COMMIT");
            } else {
                auto result = body(*writer);
                writer->exec("COMMIT");
                return result;
            }
        } catch (...) {
            if (writer->in_transaction()) {
                writer->exec("ROLLBACK");
            }
            throw;
        }
    }

    template <typename Body>
    auto read(Body&& body) -> std::invoke_result_t<Body, Connection&> {
        std::unique_ptr<Connection> connection;
        {
            std::unique_lock lock(readers_mutex);
            reader_returned.wait(lock, [&] { return !idle_readers.empty(); });
            connection = std::move(idle_readers.back());
            idle_readers.pop_back();
        }
        struct Return {
            Impl& impl;
            std::unique_ptr<Connection>& connection;
            ~Return() {
                {
                    std::lock_guard lock(impl.readers_mutex);
                    impl.idle_readers.push_back(std::move(connection));
                }
                impl.reader_returned.notify_one();
            }
        } give_back{*this, connection};
        return body(*connection);
    }

    // --- records -------------------------------------------------------------------------------------

    std::optional<Host> find_host(Connection& connection, const char* key, const std::string& value) {
        return select_one<Host>(connection, "hosts", kHostColumns, key, value, read_host);
    }
    Host require_host(Connection& connection, const std::string& id) {
        auto host = find_host(connection, "id", id);
        if (!host) {
            throw NotFoundError("id", "host " + in_quotes(id) + " not found");
        }
        return *std::move(host);
    }

    void write_host(Connection& connection, const Host& host, bool insert) {
        std::string sql =
            insert ? std::string("INSERT INTO hosts (") + kHostColumns +
                         ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                         "?16, ?17, ?18, ?19, ?20, ?21, ?22)"
                   : "UPDATE hosts SET name = ?2, agent_url = ?3, enabled = ?4, maintenance = ?5, "
                     "last_heartbeat_ms = ?6, capacity_vcpus = ?7, capacity_memory_mib = ?8, "
                     "capacity_disk_gib = ?9, ratio_cpu = ?10, ratio_ram = ?11, ratio_disk = ?12, "
                     "reserved_vcpus = ?13, reserved_memory_mib = ?14, reserved_disk_gib = ?15, "
                     "cpu_features = ?16, numa_nodes = ?17, inventory = ?18, metrics = ?19, "
                     "tags = ?20, created_ms = ?21, updated_ms = ?22 WHERE id = ?1";
        auto statement = connection.prepare(sql);
        statement.bind(1, host.id).bind(2, host.name).bind(3, host.agent_url).bind(4, host.enabled);
        statement.bind(5, host.maintenance).bind(6, host.last_heartbeat_ms);
        statement.bind(7, host.capacity.vcpus)
            .bind(8, host.capacity.memory_mib)
            .bind(9, host.capacity.disk_gib);
        statement.bind(10, host.ratios.cpu).bind(11, host.ratios.ram).bind(12, host.ratios.disk);
        statement.bind(13, host.reserved.vcpus).bind(14, host.reserved.memory_mib);
        statement.bind(15, host.reserved.disk_gib).bind(16, strings_to_json(host.cpu_features));
        statement.bind(17, numa_to_json(host.numa_nodes)).bind(18, host.inventory).bind(19, host.metrics);
        statement.bind(20, strings_to_json(host.tags)).bind(21, host.created_ms).bind(22, host.updated_ms);
        try {
            statement.run();
        } catch (const UniqueViolationError& violation) {
            throw ConflictError(violation.column,
                                "host " + violation.column + " " +
                                    in_quotes(violation.column == "id" ? host.id : host.name) +
                                    " already exists");
        }
    }

    static void validate_host(const Host& host) {
        auto negative = [](const Resources& resources) {
            return resources.vcpus < 0 || resources.memory_mib < 0 || resources.disk_gib < 0;
        };
        if (host.name.empty()) {
            throw InvalidArgumentError("host name must not be empty");
        }
        if (negative(host.capacity) || negative(host.reserved)) {
            throw InvalidArgumentError("host " + in_quotes(host.name) +
                                       ": capacity and reserved must not be negative");
        }
        if (!(host.ratios.cpu > 0) || !(host.ratios.ram > 0) || !(host.ratios.disk > 0)) {
            throw InvalidArgumentError("host " + in_quotes(host.name) +
                                       ": over-commit ratios must be positive");
        }
    }

    std::optional<Vm> find_vm(Connection& connection, const char* key, const std::string& value) {
        return select_one<Vm>(connection, "vms", kVmColumns, key, value, read_vm);
    }
    Vm require_vm(Connection& connection, const std::string& id) {
        auto vm = find_vm(connection, "id", id);
        if (!vm) {
            throw NotFoundError("id", "vm " + in_quotes(id) + " not found");
        }
        return *std::move(vm);
    }

    void write_vm(Connection& connection, const Vm& vm, bool insert) {
        std::string sql =
            insert ? std::string("INSERT INTO vms (") + kVmColumns +
                         ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                         "?16, ?17, ?18)"
                   : "UPDATE vms SET name = ?2, vcpus = ?3, memory_mib = ?4, disk_gib = ?5, "
                     "image_id = ?6, host_id = ?7, numa_node = ?8, migration_host_id = ?9, "
                     "migration_numa_node = ?10, state = ?11, server_group_id = ?12, "
                     "host_affinity = ?13, host_anti_affinity = ?14, required_cpu_features = ?15, "
                     "nics = ?16, created_ms = ?17, updated_ms = ?18 WHERE id = ?1";
        auto statement = connection.prepare(sql);
        statement.bind(1, vm.id)
            .bind(2, vm.name)
            .bind(3, vm.vcpus)
            .bind(4, vm.memory_mib)
            .bind(5, vm.disk_gib);
        statement.bind_reference(6, vm.image_id).bind_reference(7, vm.host_id).bind(8, vm.numa_node);
        statement.bind_reference(9, vm.migration_host_id).bind(10, vm.migration_numa_node);
        statement.bind(11, to_string(vm.state)).bind_reference(12, vm.server_group_id);
        statement.bind(13, strings_to_json(vm.host_affinity))
            .bind(14, strings_to_json(vm.host_anti_affinity));
        statement.bind(15, strings_to_json(vm.required_cpu_features)).bind(16, nics_to_json(vm.nics));
        statement.bind(17, vm.created_ms).bind(18, vm.updated_ms);
        try {
            statement.run();
        } catch (const UniqueViolationError& violation) {
            throw ConflictError(violation.column, "vm " + violation.column + " " +
                                                      in_quotes(violation.column == "id" ? vm.id : vm.name) +
                                                      " already exists");
        }
    }

    static void validate_vm(const Vm& vm) {
        if (vm.name.empty()) {
            throw InvalidArgumentError("vm name must not be empty");
        }
        if (vm.vcpus < 1 || vm.memory_mib < 1 || vm.disk_gib < 0) {
            throw InvalidArgumentError("vm " + in_quotes(vm.name) +
                                       ": vcpus and memory_mib must be positive and disk_gib not negative");
        }
    }

    void require_references(Connection& connection, const Vm& vm) {
        if (!vm.image_id.empty() &&
            count(connection, "SELECT COUNT(*) FROM images WHERE id = ?1", vm.image_id) == 0) {
            throw NotFoundError("image_id", "image " + in_quotes(vm.image_id) + " not found");
        }
        if (!vm.server_group_id.empty() &&
            count(connection, "SELECT COUNT(*) FROM server_groups WHERE id = ?1", vm.server_group_id) == 0) {
            throw NotFoundError("server_group_id",
                                "server group " + in_quotes(vm.server_group_id) + " not found");
        }
    }

    std::string host_name(Connection& connection, const std::string& id) {
        auto statement = connection.prepare("SELECT name FROM hosts WHERE id = ?1");
        statement.bind(1, id);
        return statement.step() ? statement.text(0) : id;
    }

    ClaimHost claim_host(Connection& connection, const std::string& host_id) {
        auto statement = connection.prepare(
            "SELECT name, enabled, maintenance, capacity_vcpus, capacity_memory_mib, capacity_disk_gib, "
            "ratio_cpu, "
            "ratio_ram, ratio_disk, reserved_vcpus, reserved_memory_mib, reserved_disk_gib, cpu_features, "
            "numa_nodes FROM hosts WHERE id = ?1");
        statement.bind(1, host_id);
        if (!statement.step()) {
            throw ClaimRejectedError("host " + in_quotes(host_id) + " not found");
        }
        Host host;
        host.capacity = {statement.integer(3), statement.integer(4), statement.integer(5)};
        host.ratios = {statement.real(6), statement.real(7), statement.real(8)};
        host.reserved = {statement.integer(9), statement.integer(10), statement.integer(11)};
        return {statement.text(0),
                statement.integer(1) != 0,
                statement.integer(2) != 0,
                usable_capacity(host),
                host.ratios,
                strings_from_json<std::set<std::string>>(statement.text(12)),
                numa_from_json(statement.text(13))};
    }

    // The re-check that makes a claim safe against racing ones: it runs inside the write transaction
    // that records the claim, so nothing it reads can change before the commit.
    void check_claim(Connection& connection, const Vm& vm, const std::string& host_id, int numa_node) {
        ClaimHost host = claim_host(connection, host_id);
        std::string where = "host " + in_quotes(host.name);
        if (!host.enabled) {
            throw ClaimRejectedError(where + " is disabled");
        }
        if (host.maintenance) {
            throw ClaimRejectedError(where + " is in maintenance");
        }
        if (!vm.host_affinity.empty() && std::find(vm.host_affinity.begin(), vm.host_affinity.end(),
                                                   host.name) == vm.host_affinity.end()) {
            throw ClaimRejectedError(where + " is not in the vm's host affinity");
        }
        if (std::find(vm.host_anti_affinity.begin(), vm.host_anti_affinity.end(), host.name) !=
            vm.host_anti_affinity.end()) {
            throw ClaimRejectedError(where + " is in the vm's host anti-affinity");
        }
        std::string missing;
        for (const auto& feature : vm.required_cpu_features) {
            if (!host.cpu_features.contains(feature)) {
                missing += (missing.empty() ? "" : ", ") + feature;
            }
        }
        if (!missing.empty()) {
            throw ClaimRejectedError(where + " lacks CPU features " + missing);
        }
        Usage usage = sum_usage(connection, host_id, numa_node);
        require_room(where, host.usable, usage.host, vm.resources());
        if (numa_node >= 0) {
            auto node = std::find_if(host.numa_nodes.begin(), host.numa_nodes.end(),
                                     [&](const NumaNode& candidate) { return candidate.id == numa_node; });
            if (node == host.numa_nodes.end()) {
                throw ClaimRejectedError(where + " has no NUMA node " + std::to_string(numa_node));
            }
            require_room(where + " NUMA node " + std::to_string(numa_node),
                         usable_capacity(*node, host.ratios), usage.node, {vm.vcpus, vm.memory_mib, 0});
        }
        if (!vm.server_group_id.empty()) {
            check_group(connection, vm, host_id, where);
        }
    }

    void check_group(Connection& connection, const Vm& vm, const std::string& host_id,
                     const std::string& where) {
        auto group = select_one<ServerGroup>(connection, "server_groups", kGroupColumns, "id",
                                             vm.server_group_id, read_group);
        if (!group) {
            throw NotFoundError("server_group_id",
                                "server group " + in_quotes(vm.server_group_id) + " not found");
        }
        std::string policy = " (" + std::string(to_string(group->policy)) + ")";
        if (group->policy == GroupPolicy::anti_affinity) {
            auto statement = connection.prepare("SELECT (SELECT COUNT(*) FROM vms WHERE server_group_id = ?1 "
                                                "AND host_id = ?2 AND id != ?3) + "
                                                "(SELECT COUNT(*) FROM vms WHERE server_group_id = ?1 AND "
                                                "migration_host_id = ?2 AND id != ?3)");
            statement.bind(1, vm.server_group_id).bind(2, host_id).bind(3, vm.id);
            statement.step();
            if (statement.integer(0) > 0) {
                throw ClaimRejectedError(where + ": server group " + in_quotes(group->name) + policy +
                                         " already has a vm there");
            }
        } else if (group->policy == GroupPolicy::affinity) {
            auto statement = connection.prepare(
                "SELECT host_id FROM vms WHERE server_group_id = ?1 AND id != ?3 AND host_id IS NOT NULL AND "
                "host_id != ?2 LIMIT 1");
            statement.bind(1, vm.server_group_id).bind(2, host_id).bind(3, vm.id);
            if (statement.step()) {
                std::string other = statement.text(0);
                throw ClaimRejectedError(where + ": server group " + in_quotes(group->name) + policy +
                                         " has its vms on host " + in_quotes(host_name(connection, other)));
            }
        }
    }

    // NIC addresses: a free IP from the network's pool and a MAC unique on the network.
    void allocate_nics(Connection& connection, Vm& vm) {
        for (auto& nic : vm.nics) {
            auto network = select_one<Network>(connection, "networks", kNetworkColumns, "id", nic.network_id,
                                               read_network);
            if (!network) {
                throw NotFoundError("network_id", "network " + in_quotes(nic.network_id) + " not found");
            }
            Ipv4Network pool = Ipv4Network::parse(network->cidr);
            if (nic.ip.empty()) {
                nic.ip = next_free_address(connection, *network, pool);
            } else {
                std::int64_t address = parse_ipv4(nic.ip);
                if (address < pool.first_pool_address() || address > pool.last_pool_address()) {
                    throw InvalidArgumentError("nic ip " + in_quotes(nic.ip) +
                                               " is not in the pool of network " + in_quotes(network->name) +
                                               " (" + network->cidr + ")");
                }
            }
            if (nic.mac.empty()) {
                nic.mac = free_mac(connection, nic.network_id);
            } else if (!is_mac(nic.mac)) {
                throw InvalidArgumentError("nic mac " + in_quotes(nic.mac) +
                                           " is not a MAC address like 52:54:00:12:34:56");
            }
            insert_address(connection, *network, nic.ip, nic.mac, vm.id);
        }
    }

    std::string next_free_address(Connection& connection, const Network& network, const Ipv4Network& pool) {
        std::unordered_set<std::int64_t> taken;
        auto statement = connection.prepare("SELECT ip FROM addresses WHERE network_id = ?1");
        statement.bind(1, network.id);
        while (statement.step()) {
            taken.insert(parse_ipv4(statement.text(0)));
        }
        for (std::int64_t address = pool.first_pool_address(); address <= pool.last_pool_address();
             ++address) {
            if (!taken.contains(address)) {
                return format_ipv4(static_cast<std::uint32_t>(address));
            }
        }
        throw ConflictError("network_id", "network " + in_quotes(network.name) + ": address pool " +
                                              network.cidr + " is exhausted");
    }

    std::string free_mac(Connection& connection, const std::string& network_id) {
        thread_local std::mt19937 generator{std::random_device{}()};
        for (;;) {
            std::string mac = format_mac(generator() & 0xffffff);
            auto statement =
                connection.prepare("SELECT COUNT(*) FROM addresses WHERE network_id = ?1 AND mac = ?2");
            statement.bind(1, network_id).bind(2, mac);
            statement.step();
            if (statement.integer(0) == 0) {
                return mac;
            }
        }
    }

    void insert_address(Connection& connection, const Network& network, const std::string& ip,
                        const std::string& mac, const std::string& vm_id) {
        auto statement =
            connection.prepare("INSERT INTO addresses (network_id, ip, mac, vm_id) VALUES (?1, ?2, ?3, ?4)");
        statement.bind(1, network.id).bind(2, ip).bind(3, mac).bind(4, vm_id);
        try {
            statement.run();
        } catch (const UniqueViolationError& violation) {
            std::string what = violation.column == "mac" ? "mac " + in_quotes(mac) : "ip " + in_quotes(ip);
            throw ConflictError(violation.column,
                                "network " + in_quotes(network.name) + ": " + what + " is already in use");
        }
    }

    void insert_operation(Connection& connection, Operation& operation) {
        if (operation.id.empty()) {
            operation.id = new_id();
        }
        if (operation.progress < 0 || operation.progress > 100) {
            throw InvalidArgumentError("operation progress " + std::to_string(operation.progress) +
                                       " is not within 0..100");
        }
        operation.created_ms = operation.updated_ms = now_ms();
        write_operation(connection, operation, true);
    }

    void write_operation(Connection& connection, const Operation& operation, bool insert) {
        std::string sql =
            insert ? std::string("INSERT INTO operations (") + kOperationColumns +
                         ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                   : "UPDATE operations SET kind = ?2, target_id = ?3, state = ?4, progress = ?5, "
                     "result = ?6, error = ?7, created_ms = ?8, updated_ms = ?9, deadline_ms = ?10 "
                     "WHERE id = ?1";
        auto statement = connection.prepare(sql);
        statement.bind(1, operation.id).bind(2, operation.kind).bind(3, operation.target_id);
        statement.bind(4, to_string(operation.state)).bind(5, operation.progress).bind(6, operation.result);
        statement.bind(7, operation.error).bind(8, operation.created_ms).bind(9, operation.updated_ms);
        statement.bind(10, operation.deadline_ms);
        try {
            statement.run();
        } catch (const UniqueViolationError&) {
            throw ConflictError("id", "operation id " + in_quotes(operation.id) + " already exists");
        }
    }

    void insert_idempotency(Connection& connection, IdempotencyRecord record) {
        if (record.created_ms == 0) {
            record.created_ms = now_ms();
        }
        auto statement = connection.prepare(
            "INSERT INTO idempotency (key, request_hash, response_status, response_body, created_ms) "
            "VALUES (?1, ?2, ?3, ?4, ?5)");
        statement.bind(1, record.key).bind(2, record.request_hash).bind(3, record.response_status);
        statement.bind(4, record.response_body).bind(5, record.created_ms);
        try {
            statement.run();
        } catch (const UniqueViolationError&) {
            throw ConflictError("key", "idempotency key " + in_quotes(record.key) + " already exists");
        }
    }

    VmCreated create_vm(Connection& connection, const VmCreation& creation) {
        VmCreated created{creation.vm, creation.operation};
        Vm& vm = created.vm;
        validate_vm(vm);
        if (vm.id.empty()) {
            vm.id = new_id();
        }
        vm.created_ms = vm.updated_ms = now_ms();
        vm.migration_host_id.clear();
        vm.migration_numa_node = -1;
        if (vm.host_id.empty()) {
            vm.numa_node = -1;
        }
        require_references(connection, vm);
        if (!vm.host_id.empty()) {
            check_claim(connection, vm, vm.host_id, vm.numa_node);
        }
        // The VM row goes first: the addresses refer to it.
        auto nics = vm.nics;
        vm.nics.clear();
        write_vm(connection, vm, true);
        if (!nics.empty()) {
            vm.nics = std::move(nics);
            allocate_nics(connection, vm);
            connection.prepare("UPDATE vms SET nics = ?2 WHERE id = ?1")
                .bind(1, vm.id)
                .bind(2, nics_to_json(vm.nics))
                .run();
        }
        if (created.operation) {
            if (created.operation->target_id.empty()) {
                created.operation->target_id = vm.id;
            }
            insert_operation(connection, *created.operation);
        }
        if (creation.idempotency) {
            insert_idempotency(connection, *creation.idempotency);
        }
        return created;
    }

    // Applies `change` to a stored record; the read and the write are one transaction.
    template <typename Record, typename Find, typename Keep, typename Write>
    Record update(const std::string& id, const std::function<void(Record&)>& change, Find find, Keep keep,
                  Write write_back) {
        return write([&](Connection& connection) {
            Record stored = find(connection, id);
            Record changed = stored;
            change(changed);
            keep(stored, changed, connection);
            write_back(connection, changed);
            return changed;
        });
    }
};

SqliteStore::SqliteStore(const std::filesystem::path& path) : SqliteStore(path, Options{}) {}

SqliteStore::SqliteStore(const std::filesystem::path& path, const Options& options)
    : impl_(std::make_unique<Impl>()) {
    impl_->path = path;
    impl_->options = options;
    if (path.has_parent_path()) {
        std::error_code error;
        std::filesystem::create_directories(path.parent_path(), error);
        if (error) {
            throw StoreError("store " + path.string() + ": create directory " + path.parent_path().string() +
                             ": " + error.message());
        }
    }
    impl_->writer = impl_->open_connection();
    impl_->writer->exec("PRAGMA journal_mode = WAL");
    // Checkpoint every 64 MiB of WAL rather than 4 MiB: a hot index page rewritten by many claims is
    // copied into the database once per checkpoint, not once per few commits.
    impl_->writer->exec("PRAGMA wal_autocheckpoint = 16384");
    migrate(*impl_->writer, options.migrate_to > 0 ? options.migrate_to : latest_schema_version());
    for (std::size_t i = 0; i < std::max<std::size_t>(1, options.reader_connections); ++i) {
        auto reader = impl_->open_connection();
        reader->exec("PRAGMA query_only = ON");
        impl_->idle_readers.push_back(std::move(reader));
    }
}

SqliteStore::~SqliteStore() = default;

int SqliteStore::latest_schema_version() { return store::latest_schema_version(); }

int SqliteStore::schema_version() {
    std::lock_guard lock(impl_->writer_mutex);
    return store::schema_version(*impl_->writer);
}

// --- hosts ----------------------------------------------------------------------------------------------

Host SqliteStore::create_host(Host host) {
    Impl::validate_host(host);
    if (host.id.empty()) {
        host.id = new_id();
    }
    host.created_ms = host.updated_ms = now_ms();
    impl_->write([&](Connection& connection) { impl_->write_host(connection, host, true); });
    return host;
}

Host SqliteStore::get_host(const std::string& id) {
    return impl_->read([&](Connection& connection) { return impl_->require_host(connection, id); });
}

std::optional<Host> SqliteStore::find_host_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) { return impl_->find_host(connection, "name", name); });
}

Page<Host> SqliteStore::list_hosts(const HostFilter& filter, const PageRequest& page) {
    Query query;
    if (filter.enabled) {
        query.where("enabled = ?", std::int64_t{*filter.enabled});
    }
    if (filter.maintenance) {
        query.where("maintenance = ?", std::int64_t{*filter.maintenance});
    }
    return impl_->read([&](Connection& connection) {
        return select_page<Host>(connection, "hosts", kHostColumns, kHostColumnCount, query, page, false,
                                 read_host);
    });
}

Host SqliteStore::update_host(const std::string& id, const std::function<void(Host&)>& change) {
    return impl_->update<Host>(
        id, change,
        [&](Connection& connection, const std::string& key) { return impl_->require_host(connection, key); },
        [](const Host& stored, Host& changed, Connection&) {
            changed.id = stored.id;
            changed.created_ms = stored.created_ms;
            changed.updated_ms = now_ms();
            Impl::validate_host(changed);
        },
        [&](Connection& connection, const Host& host) { impl_->write_host(connection, host, false); });
}

void SqliteStore::record_heartbeat(const std::string& id, TimeMs at, const std::string& metrics) {
    impl_->write([&](Connection& connection) {
        connection
            .prepare("UPDATE hosts SET last_heartbeat_ms = ?2, metrics = ?3, updated_ms = ?4 WHERE id = ?1")
            .bind(1, id)
            .bind(2, at)
            .bind(3, metrics)
            .bind(4, now_ms())
            .run();
        require_changed(connection, "host", id);
    });
}

void SqliteStore::delete_host(const std::string& id) {
    impl_->write([&](Connection& connection) {
        Host host = impl_->require_host(connection, id);
        auto vms =
            count(connection, "SELECT COUNT(*) FROM vms WHERE host_id = ?1 OR migration_host_id = ?1", id);
        if (vms > 0) {
            throw ConflictError(
                "host_id", "host " + in_quotes(host.name) + " still has " + std::to_string(vms) + " vms");
        }
        connection.prepare("DELETE FROM hosts WHERE id = ?1").bind(1, id).run();
    });
}

Resources SqliteStore::host_usage(const std::string& id) {
    return impl_->read([&](Connection& connection) {
        if (count(connection, "SELECT COUNT(*) FROM hosts WHERE id = ?1", id) == 0) {
            throw NotFoundError("id", "host " + in_quotes(id) + " not found");
        }
        return sum_usage(connection, id, -1).host;
    });
}

// --- images ---------------------------------------------------------------------------------------------

namespace {

void write_image(Connection& connection, const Image& image, const std::string& key) {
    auto statement = connection.prepare(
        key.empty()
            ? "INSERT INTO images (id, name, size_bytes, status, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
            : "UPDATE images SET id = ?1, name = ?2, size_bytes = ?3, status = ?4, created_ms = ?5 "
              "WHERE id = ?6");
    statement.bind(1, image.id)
        .bind(2, image.name)
        .bind(3, image.size_bytes)
        .bind(4, to_string(image.status));
    statement.bind(5, image.created_ms);
    if (!key.empty()) {
        statement.bind(6, key);
    }
    try {
        statement.run();
    } catch (const UniqueViolationError& violation) {
        throw ConflictError(violation.column,
                            "image " + violation.column + " " +
                                in_quotes(violation.column == "id" ? image.id : image.name) +
                                " already exists");
    }
}

Image require_image(Connection& connection, const std::string& id) {
    auto image = select_one<Image>(connection, "images", kImageColumns, "id", id, read_image);
    if (!image) {
        throw NotFoundError("id", "image " + in_quotes(id) + " not found");
    }
    return *std::move(image);
}

}  // namespace

Image SqliteStore::create_image(Image image) {
    if (image.name.empty()) {
        throw InvalidArgumentError("image name must not be empty");
    }
    if (image.id.empty()) {
        image.id = new_id();
    }
    image.created_ms = now_ms();
    impl_->write([&](Connection& connection) { write_image(connection, image, ""); });
    return image;
}

Image SqliteStore::get_image(const std::string& id) {
    return impl_->read([&](Connection& connection) { return require_image(connection, id); });
}

std::optional<Image> SqliteStore::find_image_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) {
        return select_one<Image>(connection, "images", kImageColumns, "name", name, read_image);
    });
}

Page<Image> SqliteStore::list_images(const PageRequest& page) {
    return impl_->read([&](Connection& connection) {
        return select_page<Image>(connection, "images", kImageColumns, kImageColumnCount, {}, page, false,
                                  read_image);
    });
}

Image SqliteStore::update_image(const std::string& id, const std::function<void(Image&)>& change) {
    return impl_->update<Image>(
        id, change, require_image,
        [](const Image& stored, Image& changed, Connection&) {
            changed.id = stored.id;
            changed.created_ms = stored.created_ms;
        },
        [&](Connection& connection, const Image& image) { write_image(connection, image, image.id); });
}

Image SqliteStore::finish_image_upload(const std::string& upload_id, const std::string& sha256,
                                       std::int64_t size_bytes) {
    return impl_->write([&](Connection& connection) {
        Image image = require_image(connection, upload_id);
        if (count(connection, "SELECT COUNT(*) FROM vms WHERE image_id = ?1", upload_id) > 0) {
            throw ConflictError("id",
                                "image " + in_quotes(image.name) + " is in use and cannot change its id");
        }
        image.id = sha256;
        image.size_bytes = size_bytes;
        image.status = ImageStatus::ready;
        write_image(connection, image, upload_id);
        return image;
    });
}

void SqliteStore::delete_image(const std::string& id) {
    impl_->write([&](Connection& connection) {
        Image image = require_image(connection, id);
        auto vms = count(connection, "SELECT COUNT(*) FROM vms WHERE image_id = ?1", id);
        if (vms > 0) {
            throw ConflictError(
                "image_id", "image " + in_quotes(image.name) + " is used by " + std::to_string(vms) + " vms");
        }
        connection.prepare("DELETE FROM images WHERE id = ?1").bind(1, id).run();
    });
}

// --- server groups ----------------------------------------------------------------------------------------

ServerGroup SqliteStore::create_server_group(ServerGroup group) {
    if (group.name.empty()) {
        throw InvalidArgumentError("server group name must not be empty");
    }
    if (group.id.empty()) {
        group.id = new_id();
    }
    group.created_ms = now_ms();
    impl_->write([&](Connection& connection) {
        auto statement = connection.prepare(
            "INSERT INTO server_groups (id, name, policy, created_ms) VALUES (?1, ?2, ?3, ?4)");
        statement.bind(1, group.id)
            .bind(2, group.name)
            .bind(3, to_string(group.policy))
            .bind(4, group.created_ms);
        try {
            statement.run();
        } catch (const UniqueViolationError& violation) {
            throw ConflictError(violation.column,
                                "server group " + violation.column + " " +
                                    in_quotes(violation.column == "id" ? group.id : group.name) +
                                    " already exists");
        }
    });
    return group;
}

ServerGroup SqliteStore::get_server_group(const std::string& id) {
    return impl_->read([&](Connection& connection) {
        auto group =
            select_one<ServerGroup>(connection, "server_groups", kGroupColumns, "id", id, read_group);
        if (!group) {
            throw NotFoundError("id", "server group " + in_quotes(id) + " not found");
        }
        return *std::move(group);
    });
}

std::optional<ServerGroup> SqliteStore::find_server_group_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) {
        return select_one<ServerGroup>(connection, "server_groups", kGroupColumns, "name", name, read_group);
    });
}

Page<ServerGroup> SqliteStore::list_server_groups(const PageRequest& page) {
    return impl_->read([&](Connection& connection) {
        return select_page<ServerGroup>(connection, "server_groups", kGroupColumns, kGroupColumnCount, {},
                                        page, false, read_group);
    });
}

void SqliteStore::delete_server_group(const std::string& id) {
    impl_->write([&](Connection& connection) {
        auto group =
            select_one<ServerGroup>(connection, "server_groups", kGroupColumns, "id", id, read_group);
        if (!group) {
            throw NotFoundError("id", "server group " + in_quotes(id) + " not found");
        }
        auto members = count(connection, "SELECT COUNT(*) FROM vms WHERE server_group_id = ?1", id);
        if (members > 0) {
            throw ConflictError("server_group_id", "server group " + in_quotes(group->name) + " still has " +
                                                       std::to_string(members) + " vms");
        }
        connection.prepare("DELETE FROM server_groups WHERE id = ?1").bind(1, id).run();
    });
}

// --- networks ---------------------------------------------------------------------------------------------

Network SqliteStore::create_network(Network network) {
    if (network.name.empty()) {
        throw InvalidArgumentError("network name must not be empty");
    }
    if (network.vlan_id < 1 || network.vlan_id > 4094) {
        throw InvalidArgumentError("network vlan_id " + std::to_string(network.vlan_id) +
                                   " is not within 1..4094");
    }
    Ipv4Network::parse(network.cidr);
    if (network.id.empty()) {
        network.id = new_id();
    }
    network.created_ms = now_ms();
    impl_->write([&](Connection& connection) {
        auto statement = connection.prepare(
            "INSERT INTO networks (id, name, vlan_id, cidr, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
        statement.bind(1, network.id).bind(2, network.name).bind(3, network.vlan_id).bind(4, network.cidr);
        statement.bind(5, network.created_ms);
        try {
            statement.run();
        } catch (const UniqueViolationError& violation) {
            std::string value = violation.column == "vlan_id" ? std::to_string(network.vlan_id)
                                : violation.column == "id"    ? in_quotes(network.id)
                                                              : in_quotes(network.name);
            throw ConflictError(violation.column,
                                "network " + violation.column + " " + value + " already exists");
        }
    });
    return network;
}

Network SqliteStore::get_network(const std::string& id) {
    return impl_->read([&](Connection& connection) {
        auto network = select_one<Network>(connection, "networks", kNetworkColumns, "id", id, read_network);
        if (!network) {
            throw NotFoundError("id", "network " + in_quotes(id) + " not found");
        }
        return *std::move(network);
    });
}

std::optional<Network> SqliteStore::find_network_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) {
        return select_one<Network>(connection, "networks", kNetworkColumns, "name", name, read_network);
    });
}

Page<Network> SqliteStore::list_networks(const PageRequest& page) {
    return impl_->read([&](Connection& connection) {
        return select_page<Network>(connection, "networks", kNetworkColumns, kNetworkColumnCount, {}, page,
                                    false, read_network);
    });
}

void SqliteStore::delete_network(const std::string& id) {
    impl_->write([&](Connection& connection) {
        auto network = select_one<Network>(connection, "networks", kNetworkColumns, "id", id, read_network);
        if (!network) {
            throw NotFoundError("id", "network " + in_quotes(id) + " not found");
        }
        auto nics = count(connection, "SELECT COUNT(*) FROM addresses WHERE network_id = ?1", id);
        if (nics > 0) {
            throw ConflictError("network_id", "network " + in_quotes(network->name) + " still has " +
                                                  std::to_string(nics) + " nics");
        }
        connection.prepare("DELETE FROM networks WHERE id = ?1").bind(1, id).run();
    });
}

std::string SqliteStore::allocate_address(const std::string& network_id, const std::string& vm_id) {
    return impl_->write([&](Connection& connection) {
        auto network =
            select_one<Network>(connection, "networks", kNetworkColumns, "id", network_id, read_network);
        if (!network) {
            throw NotFoundError("network_id", "network " + in_quotes(network_id) + " not found");
        }
        impl_->require_vm(connection, vm_id);
        std::string ip = impl_->next_free_address(connection, *network, Ipv4Network::parse(network->cidr));
        impl_->insert_address(connection, *network, ip, impl_->free_mac(connection, network_id), vm_id);
        return ip;
    });
}

void SqliteStore::release_address(const std::string& network_id, const std::string& ip) {
    impl_->write([&](Connection& connection) {
        connection.prepare("DELETE FROM addresses WHERE network_id = ?1 AND ip = ?2")
            .bind(1, network_id)
            .bind(2, ip)
            .run();
        if (connection.changes() == 0) {
            throw NotFoundError(
                "ip", "network " + in_quotes(network_id) + ": address " + in_quotes(ip) + " not found");
        }
    });
}

// --- vms --------------------------------------------------------------------------------------------------

VmCreated SqliteStore::create_vm(const VmCreation& creation) {
    return impl_->write([&](Connection& connection) { return impl_->create_vm(connection, creation); });
}

std::vector<VmCreationOutcome> SqliteStore::create_vms(std::span<const VmCreation> creations) {
    std::vector<VmCreationOutcome> outcomes;
    outcomes.reserve(creations.size());
    try {
        impl_->write([&](Connection& connection) {
            for (const auto& creation : creations) {
                // A savepoint per creation: one that fails leaves no trace, the others still commit.
                connection.prepare("SAVEPOINT creation").run();
                try {
                    outcomes.emplace_back(impl_->create_vm(connection, creation));
                    connection.prepare("RELEASE creation").run();
                } catch (...) {
                    outcomes.emplace_back(std::current_exception());
                    connection.prepare("ROLLBACK TO creation").run();
                    connection.prepare("RELEASE creation").run();
                }
            }
        });
    } catch (...) {
        // The commit itself failed: nothing of the batch is stored.
        outcomes.assign(creations.size(), std::current_exception());
    }
    return outcomes;
}

Vm SqliteStore::get_vm(const std::string& id) {
    return impl_->read([&](Connection& connection) { return impl_->require_vm(connection, id); });
}

std::optional<Vm> SqliteStore::find_vm_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) { return impl_->find_vm(connection, "name", name); });
}

Page<Vm> SqliteStore::list_vms(const VmFilter& filter, const PageRequest& page) {
    Query query;
    if (filter.state) {
        query.where("state = ?", std::string(to_string(*filter.state)));
    }
    if (!filter.host_id.empty()) {
        query.where("(host_id = ? OR migration_host_id = ?)", filter.host_id);
    }
    if (!filter.image_id.empty()) {
        query.where("image_id = ?", filter.image_id);
    }
    if (!filter.server_group_id.empty()) {
        query.where("server_group_id = ?", filter.server_group_id);
    }
    if (!filter.network_id.empty()) {
        query.where("id IN (SELECT vm_id FROM addresses WHERE network_id = ?)", filter.network_id);
    }
    if (!filter.name_prefix.empty()) {
        query.where("substr(name, 1, length(?)) = ?", filter.name_prefix);
    }
    return impl_->read([&](Connection& connection) {
        return select_page<Vm>(connection, "vms", kVmColumns, kVmColumnCount, query, page, false, read_vm);
    });
}

Vm SqliteStore::update_vm(const std::string& id, const std::function<void(Vm&)>& change) {
    return impl_->update<Vm>(
        id, change,
        [&](Connection& connection, const std::string& key) { return impl_->require_vm(connection, key); },
        [&](const Vm& stored, Vm& changed, Connection& connection) {
            changed.id = stored.id;
            changed.created_ms = stored.created_ms;
            changed.updated_ms = now_ms();
            changed.host_id = stored.host_id;
            changed.numa_node = stored.numa_node;
            changed.migration_host_id = stored.migration_host_id;
            changed.migration_numa_node = stored.migration_numa_node;
            changed.nics = stored.nics;
            if (!stored.host_id.empty()) {
                // What the claim was checked against stays as it was while the VM holds its host.
                changed.vcpus = stored.vcpus;
                changed.memory_mib = stored.memory_mib;
                changed.disk_gib = stored.disk_gib;
                changed.server_group_id = stored.server_group_id;
                changed.host_affinity = stored.host_affinity;
                changed.host_anti_affinity = stored.host_anti_affinity;
                changed.required_cpu_features = stored.required_cpu_features;
            }
            Impl::validate_vm(changed);
            impl_->require_references(connection, changed);
        },
        [&](Connection& connection, const Vm& vm) { impl_->write_vm(connection, vm, false); });
}

Vm SqliteStore::place_vm(const std::string& id, const std::string& host_id, int numa_node) {
    return impl_->write([&](Connection& connection) {
        Vm vm = impl_->require_vm(connection, id);
        if (!vm.host_id.empty()) {
            throw ConflictError("host_id", "vm " + in_quotes(vm.name) + " is already placed on host " +
                                               in_quotes(impl_->host_name(connection, vm.host_id)));
        }
        impl_->check_claim(connection, vm, host_id, numa_node);
        vm.host_id = host_id;
        vm.numa_node = numa_node;
        if (vm.state == VmState::pending) {
            vm.state = VmState::scheduled;
        }
        vm.updated_ms = now_ms();
        impl_->write_vm(connection, vm, false);
        return vm;
    });
}

Vm SqliteStore::unplace_vm(const std::string& id) {
    return impl_->write([&](Connection& connection) {
        Vm vm = impl_->require_vm(connection, id);
        if (!vm.migration_host_id.empty()) {
            throw ConflictError("migration_host_id", "vm " + in_quotes(vm.name) + " is migrating");
        }
        vm.host_id.clear();
        vm.numa_node = -1;
        vm.state = VmState::pending;
        vm.updated_ms = now_ms();
        impl_->write_vm(connection, vm, false);
        return vm;
    });
}

Vm SqliteStore::claim_migration(const std::string& id, const std::string& target_host_id, int numa_node) {
    return impl_->write([&](Connection& connection) {
        Vm vm = impl_->require_vm(connection, id);
        if (vm.host_id.empty()) {
            throw ConflictError("host_id", "vm " + in_quotes(vm.name) + " is not placed on a host");
        }
        if (!vm.migration_host_id.empty()) {
            throw ConflictError("migration_host_id",
                                "vm " + in_quotes(vm.name) + " is already migrating to host " +
                                    in_quotes(impl_->host_name(connection, vm.migration_host_id)));
        }
        if (target_host_id == vm.host_id) {
            throw ClaimRejectedError("vm " + in_quotes(vm.name) + " is already on host " +
                                     in_quotes(impl_->host_name(connection, target_host_id)));
        }
        impl_->check_claim(connection, vm, target_host_id, numa_node);
        vm.migration_host_id = target_host_id;
        vm.migration_numa_node = numa_node;
        vm.updated_ms = now_ms();
        impl_->write_vm(connection, vm, false);
        return vm;
    });
}

Vm SqliteStore::finish_migration(const std::string& id, bool succeeded) {
    return impl_->write([&](Connection& connection) {
        Vm vm = impl_->require_vm(connection, id);
        if (vm.migration_host_id.empty()) {
            throw ConflictError("migration_host_id", "vm " + in_quotes(vm.name) + " is not migrating");
        }
        if (succeeded) {
            vm.host_id = vm.migration_host_id;
            vm.numa_node = vm.migration_numa_node;
        }
        vm.migration_host_id.clear();
        vm.migration_numa_node = -1;
        vm.updated_ms = now_ms();
        impl_->write_vm(connection, vm, false);
        return vm;
    });
}

void SqliteStore::delete_vm(const std::string& id) {
    impl_->write([&](Connection& connection) {
        connection.prepare("DELETE FROM vms WHERE id = ?1").bind(1, id).run();
        require_changed(connection, "vm", id);
    });
}

// --- operations -------------------------------------------------------------------------------------------

Operation SqliteStore::create_operation(Operation operation) {
    impl_->write([&](Connection& connection) { impl_->insert_operation(connection, operation); });
    return operation;
}

Operation SqliteStore::get_operation(const std::string& id) {
    return impl_->read([&](Connection& connection) {
        auto operation =
            select_one<Operation>(connection, "operations", kOperationColumns, "id", id, read_operation);
        if (!operation) {
            throw NotFoundError("id", "operation " + in_quotes(id) + " not found");
        }
        return *std::move(operation);
    });
}

Page<Operation> SqliteStore::list_operations(const OperationFilter& filter, const PageRequest& page) {
    Query query;
    if (filter.state) {
        query.where("state = ?", std::string(to_string(*filter.state)));
    }
    if (!filter.kind.empty()) {
        query.where("kind = ?", filter.kind);
    }
    if (!filter.target_id.empty()) {
        query.where("target_id = ?", filter.target_id);
    }
    if (filter.deadline_before) {
        query.where("deadline_ms != 0 AND deadline_ms < ?", *filter.deadline_before);
    }
    return impl_->read([&](Connection& connection) {
        return select_page<Operation>(connection, "operations", kOperationColumns, kOperationColumnCount,
                                      query, page, filter.newest_first, read_operation);
    });
}

Operation SqliteStore::update_operation(const std::string& id,
                                        const std::function<void(Operation&)>& change) {
    return impl_->update<Operation>(
        id, change,
        [&](Connection& connection, const std::string& key) {
            auto operation =
                select_one<Operation>(connection, "operations", kOperationColumns, "id", key, read_operation);
            if (!operation) {
                throw NotFoundError("id", "operation " + in_quotes(key) + " not found");
            }
            return *std::move(operation);
        },
        [](const Operation& stored, Operation& changed, Connection&) {
            changed.id = stored.id;
            changed.created_ms = stored.created_ms;
            changed.updated_ms = now_ms();
            if (changed.progress < 0 || changed.progress > 100) {
                throw InvalidArgumentError("operation progress " + std::to_string(changed.progress) +
                                           " is not within 0..100");
            }
        },
        [&](Connection& connection, const Operation& operation) {
            impl_->write_operation(connection, operation, false);
        });
}

// --- idempotency ------------------------------------------------------------------------------------------

std::optional<IdempotencyRecord> SqliteStore::find_idempotency(const std::string& key) {
    return impl_->read([&](Connection& connection) -> std::optional<IdempotencyRecord> {
        auto statement = connection.prepare("SELECT key, request_hash, response_status, response_body, "
                                            "created_ms FROM idempotency WHERE key = ?1");
        statement.bind(1, key);
        if (!statement.step()) {
            return std::nullopt;
        }
        return IdempotencyRecord{statement.text(0), statement.text(1), static_cast<int>(statement.integer(2)),
                                 statement.text(3), statement.integer(4)};
    });
}

void SqliteStore::put_idempotency(const IdempotencyRecord& record) {
    impl_->write([&](Connection& connection) { impl_->insert_idempotency(connection, record); });
}

std::size_t SqliteStore::expire_idempotency(TimeMs before) {
    return impl_->write([&](Connection& connection) {
        connection.prepare("DELETE FROM idempotency WHERE created_ms < ?1").bind(1, before).run();
        return static_cast<std::size_t>(connection.changes());
    });
}

}  // namespace vim::controller::store
