#pragma once

// What SqliteStore's source files share: the mapping of records to rows, the query helpers, the records
// several kinds of writes need, and Impl (the connections, with group commit for the writer).

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "checkpointer.h"
#include "controller/store/sqlite_store.h"
#include "group_commit.h"
#include "ipv4.h"
#include "sqlite.h"

namespace vim::controller::store {

// --- records as rows (rows.cpp) ------------------------------------------------------------------------

inline std::string in_quotes(const std::string& text) { return "\"" + text + "\""; }

inline std::string strings_to_json(const auto& strings) { return nlohmann::json(strings).dump(); }

template <typename Container>
Container strings_from_json(const std::string& text) {
    Container strings;
    for (const auto& item : nlohmann::json::parse(text)) {
        strings.insert(strings.end(), item.get<std::string>());
    }
    return strings;
}

std::string numa_to_json(const std::vector<NumaNode>& nodes);
std::vector<NumaNode> numa_from_json(const std::string& text);
std::string nics_to_json(const std::vector<Nic>& nics);
std::vector<Nic> nics_from_json(const std::string& text);

inline constexpr const char* kHostColumns =
    "id, name, agent_url, enabled, maintenance, last_heartbeat_ms, capacity_vcpus, capacity_memory_mib, "
    "capacity_disk_gib, ratio_cpu, ratio_ram, ratio_disk, reserved_vcpus, reserved_memory_mib, "
    "reserved_disk_gib, cpu_features, numa_nodes, inventory, metrics, tags, created_ms, updated_ms";
inline constexpr int kHostColumnCount = 22;
inline constexpr const char* kImageColumns = "id, name, size_bytes, status, created_ms";
inline constexpr int kImageColumnCount = 5;
inline constexpr const char* kGroupColumns = "id, name, policy, created_ms";
inline constexpr int kGroupColumnCount = 4;
inline constexpr const char* kNetworkColumns = "id, name, vlan_id, cidr, created_ms";
inline constexpr int kNetworkColumnCount = 5;
inline constexpr const char* kVmColumns =
    "id, name, vcpus, memory_mib, disk_gib, image_id, host_id, numa_node, migration_host_id, "
    "migration_numa_node, state, server_group_id, host_affinity, host_anti_affinity, required_cpu_features, "
    "nics, created_ms, updated_ms, figures, unmanaged_pid, unmanaged_command, unmanaged_api_socket, "
    "found_running";
inline constexpr int kVmColumnCount = 23;
inline constexpr const char* kOperationColumns =
    "id, kind, target_id, state, progress, result, error, created_ms, updated_ms, deadline_ms";
inline constexpr int kOperationColumnCount = 10;

Host read_host(const Connection::Statement& row);
Image read_image(const Connection::Statement& row);
ServerGroup read_group(const Connection::Statement& row);
Network read_network(const Connection::Statement& row);
Vm read_vm(const Connection::Statement& row);
Operation read_operation(const Connection::Statement& row);

// --- queries (rows.cpp) --------------------------------------------------------------------------------

// A keyset page: items after (or, newest first, before) the token's seq.
std::int64_t parse_page_token(const PageRequest& page);

using Parameter = std::variant<std::int64_t, std::string>;

// A SELECT with optional conditions, built per call; its text is one of few shapes, so the
// connection's statement cache still holds it.
struct Query {
    std::vector<std::string> conditions;
    std::vector<Parameter> parameters;

    // Every '?' in the condition stands for the one value.
    void where(const std::string& condition_with_placeholders, Parameter value);
};

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

std::int64_t count(Connection& connection, const std::string& sql, const std::string& value);
void require_changed(Connection& connection, const char* noun, const std::string& id);

// What the VMs on a host hold (placed there or migrating to it), in total and on one NUMA node
// (hosts.cpp).
struct Usage {
    Resources host;
    Resources node;  // of the NUMA node asked about
};
Usage sum_usage(Connection& connection, const std::string& host_id, int numa_node);

// Records several kinds of writes need, each in the file of its kind.
std::optional<Host> find_host(Connection& connection, const char* key, const std::string& value);
Host require_host(Connection& connection, const std::string& id);
std::string host_name(Connection& connection, const std::string& id);  // the id when there is no such host
std::optional<Vm> find_vm(Connection& connection, const char* key, const std::string& value);
Vm require_vm(Connection& connection, const std::string& id);
void write_vm(Connection& connection, const Vm& vm, bool insert);
// A VM with its claim, NIC addresses, operation and idempotency key (vms.cpp).
VmCreated insert_vm(Connection& connection, const VmCreation& creation);
// The re-check that makes a claim safe against racing ones (claims.cpp): it runs inside the write
// transaction that records the claim, so nothing it reads can change before the commit.
void check_claim(Connection& connection, const Vm& vm, const std::string& host_id, int numa_node);
// NIC addresses (networks.cpp): a free IP from the network's pool and a MAC unique on the network.
void allocate_nics(Connection& connection, Vm& vm);
void insert_operation(Connection& connection, Operation& operation);
void insert_idempotency(Connection& connection, IdempotencyRecord record);

// Reads a record, applies `change`, keeps what `change` may not alter and writes it back, inside the caller's
// write transaction.
template <typename Record, typename Find, typename Keep, typename Write>
Record change_record(Connection& connection, const std::string& id,
                     const std::function<void(Record&)>& change, Find find, Keep keep, Write write_back) {
    Record stored = find(connection, id);
    Record changed = stored;
    change(changed);
    keep(stored, changed, connection);
    write_back(connection, changed);
    return changed;
}
// update_vm and update_operation inside the caller's write transaction (vms.cpp, operations.cpp).
Vm change_vm(Connection& connection, const std::string& id, const std::function<void(Vm&)>& change);
Operation change_operation(Connection& connection, const std::string& id,
                           const std::function<void(Operation&)>& change);

// --- the store's state ---------------------------------------------------------------------------------

struct SqliteStore::Impl {
    std::filesystem::path path;
    Options options;
    std::unique_ptr<Checkpointer> checkpointer;  // before the writer, whose WAL hook calls it: outlives it
    std::unique_ptr<Connection> writer;
    std::unique_ptr<GroupCommit> commits;  // the only user of `writer` once the schema is migrated
    std::mutex readers_mutex;
    std::condition_variable reader_returned;
    std::vector<std::unique_ptr<Connection>> idle_readers;

    std::unique_ptr<Connection> open_connection() const;

    // Runs `body` in a write transaction, shared with the writes of other threads (group commit); returns
    // once it is committed durably.
    template <typename Body>
    auto write(Body&& body) -> std::invoke_result_t<Body, Connection&> {
        using Result = std::invoke_result_t<Body, Connection&>;
        if constexpr (std::is_void_v<Result>) {
            commits->run(body);
        } else {
            std::optional<Result> result;
            commits->run([&](Connection& connection) { result.emplace(body(connection)); });
            return std::move(*result);
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

    // Applies `change` to a stored record; the read and the write are one transaction.
    template <typename Record, typename Find, typename Keep, typename Write>
    Record update(const std::string& id, const std::function<void(Record&)>& change, Find find, Keep keep,
                  Write write_back) {
        return write([&](Connection& connection) {
            return change_record(connection, id, change, find, keep, write_back);
        });
    }
};

}  // namespace vim::controller::store
