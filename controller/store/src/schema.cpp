#include "schema.h"

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "controller/store/errors.h"

namespace vim::controller::store {

namespace {

// Migration N (counting from 1) takes a file from version N-1 to N. Released ones never change: an old
// file is brought forward by replaying the ones it lacks. Empty references are NULL so that foreign keys
// check the others; the integer `seq` orders records by creation and carries page tokens.
constexpr std::array<const char*, 2> kTablesAndMigrationHost{
    R"sql(
CREATE TABLE hosts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    agent_url TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    maintenance INTEGER NOT NULL,
    last_heartbeat_ms INTEGER NOT NULL,
    capacity_vcpus INTEGER NOT NULL,
    capacity_memory_mib INTEGER NOT NULL,
    capacity_disk_gib INTEGER NOT NULL,
    ratio_cpu REAL NOT NULL,
    ratio_ram REAL NOT NULL,
    ratio_disk REAL NOT NULL,
    reserved_vcpus INTEGER NOT NULL,
    reserved_memory_mib INTEGER NOT NULL,
    reserved_disk_gib INTEGER NOT NULL,
    cpu_features TEXT NOT NULL,
    numa_nodes TEXT NOT NULL,
    inventory TEXT NOT NULL,
    metrics TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE images (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE server_groups (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    policy TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE networks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    vlan_id INTEGER NOT NULL UNIQUE,
    cidr TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE vms (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    vcpus INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    disk_gib INTEGER NOT NULL,
    image_id TEXT REFERENCES images(id),
    host_id TEXT REFERENCES hosts(id),
    numa_node INTEGER NOT NULL,
    state TEXT NOT NULL,
    server_group_id TEXT REFERENCES server_groups(id),
    host_affinity TEXT NOT NULL,
    host_anti_affinity TEXT NOT NULL,
    required_cpu_features TEXT NOT NULL,
    nics TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
-- Covering, so that a claim's usage sums and group checks read only the index; partial, so that a VM
-- without the reference costs the index nothing.
CREATE INDEX vms_by_host ON vms(host_id, numa_node, vcpus, memory_mib, disk_gib) WHERE host_id IS NOT NULL;
CREATE INDEX vms_by_group ON vms(server_group_id, host_id, id) WHERE server_group_id IS NOT NULL;
CREATE INDEX vms_by_image ON vms(image_id) WHERE image_id IS NOT NULL;
CREATE TABLE addresses (
    network_id TEXT NOT NULL REFERENCES networks(id),
    ip TEXT NOT NULL,
    mac TEXT NOT NULL,
    vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    PRIMARY KEY (network_id, ip),
    UNIQUE (network_id, mac)
);
CREATE INDEX addresses_by_vm ON addresses(vm_id);
CREATE TABLE operations (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    state TEXT NOT NULL,
    progress INTEGER NOT NULL,
    result TEXT NOT NULL,
    error TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL
);
CREATE INDEX operations_by_target ON operations(target_id);
CREATE INDEX operations_by_state ON operations(state);
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    response_status INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
)sql",
    // Live migration: the target host holds the VM's resources until the move ends.
    R"sql(
ALTER TABLE vms ADD COLUMN migration_host_id TEXT REFERENCES hosts(id);
ALTER TABLE vms ADD COLUMN migration_numa_node INTEGER NOT NULL DEFAULT -1;
CREATE INDEX vms_by_migration_host ON vms(migration_host_id, migration_numa_node, vcpus, memory_mib, disk_gib)
    WHERE migration_host_id IS NOT NULL;
)sql",
};

// A VM row's resources counted on the host (and NUMA node) that its columns {host} and {node} name: added
// for the NEW row, taken away for the OLD one.
constexpr const char* kAddUsage = R"sql(
    INSERT INTO host_usage SELECT NEW.{host}, NEW.{node}, NEW.vcpus, NEW.memory_mib, NEW.disk_gib
        WHERE NEW.{host} IS NOT NULL
        ON CONFLICT DO UPDATE SET vcpus = vcpus + excluded.vcpus, memory_mib = memory_mib + excluded.memory_mib,
            disk_gib = disk_gib + excluded.disk_gib;)sql";
constexpr const char* kRemoveUsage = R"sql(
    UPDATE host_usage SET vcpus = vcpus - OLD.vcpus, memory_mib = memory_mib - OLD.memory_mib,
        disk_gib = disk_gib - OLD.disk_gib WHERE host_id = OLD.{host} AND numa_node = OLD.{node};)sql";

void replace_all(std::string& text, std::string_view placeholder, std::string_view value) {
    for (auto at = text.find(placeholder); at != std::string::npos;
         at = text.find(placeholder, at + value.size())) {
        text.replace(at, placeholder.size(), value);
    }
}

// A VM holds its resources on its host and, while it migrates, on the target too.
std::string on_host_and_migration_target(std::string_view usage) {
    const auto on = [&](std::string_view host, std::string_view node) {
        std::string sql(usage);
        replace_all(sql, "{host}", host);
        replace_all(sql, "{node}", node);
        return sql;
    };
    return on("host_id", "numa_node") + on("migration_host_id", "migration_numa_node");
}

// What the VMs on each host (and NUMA node) hold, kept by triggers: a claim's check reads one row per node
// instead of summing every VM of the host, which costs as much as the host is dense. A move (the update
// trigger) is the delete's subtraction followed by the insert's addition.
std::string host_usage_migration() {
    const std::string added = on_host_and_migration_target(kAddUsage);
    const std::string removed = on_host_and_migration_target(kRemoveUsage);
    return R"sql(
CREATE TABLE host_usage (
    host_id TEXT NOT NULL,
    numa_node INTEGER NOT NULL,
    vcpus INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    disk_gib INTEGER NOT NULL,
    PRIMARY KEY (host_id, numa_node)
) WITHOUT ROWID;
INSERT INTO host_usage (host_id, numa_node, vcpus, memory_mib, disk_gib)
    SELECT host_id, numa_node, SUM(vcpus), SUM(memory_mib), SUM(disk_gib) FROM (
        SELECT host_id, numa_node, vcpus, memory_mib, disk_gib FROM vms WHERE host_id IS NOT NULL
        UNION ALL
        SELECT migration_host_id, migration_numa_node, vcpus, memory_mib, disk_gib FROM vms
            WHERE migration_host_id IS NOT NULL)
    GROUP BY host_id, numa_node;
CREATE TRIGGER vms_usage_insert AFTER INSERT ON vms BEGIN)sql" +
           added + R"sql(
END;
CREATE TRIGGER vms_usage_delete AFTER DELETE ON vms BEGIN)sql" +
           removed + R"sql(
END;
CREATE TRIGGER vms_usage_update
AFTER UPDATE OF host_id, numa_node, migration_host_id, migration_numa_node, vcpus, memory_mib, disk_gib ON vms
BEGIN)sql" +
           removed + added +
           R"sql(
END;
)sql";
}

// What hosts report of their VMs: the latest figures, and the KVM processes their agents did not start.
constexpr const char* kHostReports = R"sql(
ALTER TABLE vms ADD COLUMN figures TEXT NOT NULL DEFAULT '{}';
ALTER TABLE vms ADD COLUMN unmanaged_pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN unmanaged_command TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN unmanaged_api_socket TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN found_running INTEGER NOT NULL DEFAULT 0;
CREATE INDEX vms_unmanaged ON vms(host_id, unmanaged_pid) WHERE unmanaged_pid != 0;
)sql";

// Every migration, in order.
const std::vector<std::string>& migrations() {
    static const std::vector<std::string> all{kTablesAndMigrationHost[0], kTablesAndMigrationHost[1],
                                              host_usage_migration(), kHostReports};
    return all;
}

}  // namespace

int latest_schema_version() { return static_cast<int>(migrations().size()); }

int schema_version(Connection& connection) {
    connection.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    auto statement = connection.prepare("SELECT MAX(version) FROM schema_version");
    return statement.step() && !statement.is_null(0) ? static_cast<int>(statement.integer(0)) : 0;
}

void migrate(Connection& connection, int target) {
    connection.exec("BEGIN IMMEDIATE");
    try {
        int version = schema_version(connection);
        if (version > latest_schema_version()) {
            throw StoreError("store " + connection.path().string() + ": schema version " +
                             std::to_string(version) + " is newer than this build's " +
                             std::to_string(latest_schema_version()));
        }
        for (; version < target; ++version) {
            connection.exec(migrations()[static_cast<std::size_t>(version)]);
            connection.prepare("INSERT INTO schema_version (version) VALUES (?1)").bind(1, version + 1).run();
        }
        connection.exec("COMMIT");
    } catch (...) {
        connection.exec("ROLLBACK");
        throw;
    }
}

}  // namespace vim::controller::store
