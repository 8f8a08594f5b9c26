#include "sqlite_store_impl.h"

namespace vim::controller::store {

namespace {

void write_host(Connection& connection, const Host& host, bool insert) {
    std::string sql = insert
                          ? std::string("INSERT INTO hosts (") + kHostColumns +
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
    statement.bind(7, host.capacity.vcpus).bind(8, host.capacity.memory_mib).bind(9, host.capacity.disk_gib);
    statement.bind(10, host.ratios.cpu).bind(11, host.ratios.ram).bind(12, host.ratios.disk);
    statement.bind(13, host.reserved.vcpus).bind(14, host.reserved.memory_mib);
    statement.bind(15, host.reserved.disk_gib).bind(16, strings_to_json(host.cpu_features));
    statement.bind(17, numa_to_json(host.numa_nodes)).bind(18, host.inventory).bind(19, host.metrics);
    statement.bind(20, strings_to_json(host.tags)).bind(21, host.created_ms).bind(22, host.updated_ms);
    try {
        statement.run();
    } catch (const UniqueViolationError& violation) {
        throw ConflictError(violation.column, "host " + violation.column + " " +
                                                  in_quotes(violation.column == "id" ? host.id : host.name) +
                                                  " already exists");
    }
}

void validate_host(const Host& host) {
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
        throw InvalidArgumentError("host " + in_quotes(host.name) + ": over-commit ratios must be positive");
    }
}

}  // namespace

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

std::string host_name(Connection& connection, const std::string& id) {
    auto statement = connection.prepare("SELECT name FROM hosts WHERE id = ?1");
    statement.bind(1, id);
    return statement.step() ? statement.text(0) : id;
}

Usage sum_usage(Connection& connection, const std::string& host_id, int numa_node) {
    auto statement = connection.prepare(
        "SELECT COALESCE(SUM(vcpus), 0), COALESCE(SUM(memory_mib), 0), COALESCE(SUM(disk_gib), 0), "
        "COALESCE(SUM(CASE WHEN numa_node = ?2 THEN vcpus END), 0), "
        "COALESCE(SUM(CASE WHEN numa_node = ?2 THEN memory_mib END), 0) FROM host_usage WHERE host_id = ?1");
    statement.bind(1, host_id).bind(2, numa_node);
    statement.step();
    return {{statement.integer(0), statement.integer(1), statement.integer(2)},
            {statement.integer(3), statement.integer(4), 0}};
}

Host SqliteStore::create_host(Host host) {
    validate_host(host);
    if (host.id.empty()) {
        host.id = new_id();
    }
    host.created_ms = host.updated_ms = now_ms();
    impl_->write([&](Connection& connection) { write_host(connection, host, true); });
    return host;
}

Host SqliteStore::get_host(const std::string& id) {
    return impl_->read([&](Connection& connection) { return require_host(connection, id); });
}

std::optional<Host> SqliteStore::find_host_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) { return find_host(connection, "name", name); });
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
        [&](Connection& connection, const std::string& key) { return require_host(connection, key); },
        [](const Host& stored, Host& changed, Connection&) {
            changed.id = stored.id;
            changed.created_ms = stored.created_ms;
            changed.updated_ms = now_ms();
            validate_host(changed);
        },
        [&](Connection& connection, const Host& host) { write_host(connection, host, false); });
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
        Host host = require_host(connection, id);
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

}  // namespace vim::controller::store
