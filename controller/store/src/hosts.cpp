#include <map>
#include <set>

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

namespace {

// The VMs a report may change: on the host, not moving, in a state a guest's life decides.
struct SettledVm {
    std::string id;
    VmState state;
};

std::vector<SettledVm> settled_vms(Connection& connection, const std::string& host_id) {
    auto statement =
        connection.prepare("SELECT id, state FROM vms WHERE host_id = ?1 AND migration_host_id IS NULL AND "
                           "state IN ('running', 'missing', 'stopped', 'error')");
    statement.bind(1, host_id);
    std::vector<SettledVm> vms;
    while (statement.step()) {
        vms.push_back({statement.text(0), parse_vm_state(statement.text(1))});
    }
    return vms;
}

// The new state of a settled VM after a report, or nullopt when it stays. A VM in error that its host
// reports (a create that failed late, an HA restart that found no host while its host was away) is what
// the host says.
std::optional<VmState> reported_state(VmState now, const HostReport::VmReport* report) {
    if (report == nullptr) {
        return now == VmState::running ? std::optional(VmState::missing) : std::nullopt;
    }
    const VmState reported = report->running ? VmState::running : VmState::stopped;
    return reported == now ? std::nullopt : std::optional(reported);
}

void record_unmanaged(Connection& connection, const Host& host, const HostReport& report,
                      HostReportOutcome& outcome) {
    // pid -> (id, state) of this host's VMs that came from unmanaged processes.
    std::map<std::int64_t, std::pair<std::string, VmState>> known;
    {
        auto statement = connection.prepare(
            "SELECT unmanaged_pid, id, state FROM vms WHERE host_id = ?1 AND unmanaged_pid != 0");
        statement.bind(1, host.id);
        while (statement.step()) {
            known[statement.integer(0)] = {statement.text(1), parse_vm_state(statement.text(2))};
        }
    }
    std::set<std::int64_t> listed;
    for (const auto& process : report.unmanaged) {
        listed.insert(process.pid);
        const auto found = known.find(process.pid);
        if (found != known.end()) {
            // Only a VM still unmanaged follows its process: one being adopted or deleted is an
            // operation's to change.
            if (found->second.second == VmState::unmanaged) {
                const Vm vm = require_vm(connection, found->second.first);
                if (vm.unmanaged_command != process.command ||
                    vm.unmanaged_api_socket != process.api_socket) {
                    Vm refreshed = vm;
                    refreshed.unmanaged_command = process.command;
                    refreshed.unmanaged_api_socket = process.api_socket;
                    refreshed.updated_ms = now_ms();
                    write_vm(connection, refreshed, false);
                }
            }
            continue;
        }
        Vm vm;
        vm.id = new_id();
        vm.name = "unmanaged-" + host.name + "-" + std::to_string(process.pid);
        if (find_vm(connection, "name", vm.name)) {
            continue;  // a VM someone named so: the process stays unlisted rather than fail the heartbeat
        }
        vm.vcpus = process.vcpus;
        vm.memory_mib = process.memory_mib;
        vm.host_id = host.id;
        vm.state = VmState::unmanaged;
        vm.found_running = true;
        vm.unmanaged_pid = process.pid;
        vm.unmanaged_command = process.command;
        vm.unmanaged_api_socket = process.api_socket;
        vm.created_ms = vm.updated_ms = now_ms();
        write_vm(connection, vm, true);
        outcome.changed.push_back(std::move(vm));
    }
    for (const auto& [pid, record] : known) {
        if (record.second == VmState::unmanaged && !listed.contains(pid)) {
            outcome.removed.push_back(require_vm(connection, record.first));
            connection.prepare("DELETE FROM vms WHERE id = ?1").bind(1, record.first).run();
        }
    }
}

}  // namespace

HostReportOutcome SqliteStore::record_host_report(const std::string& id, const HostReport& report) {
    return impl_->write([&](Connection& connection) {
        const Host host = require_host(connection, id);
        connection
            .prepare("UPDATE hosts SET last_heartbeat_ms = ?2, metrics = ?3, updated_ms = ?4 WHERE id = ?1")
            .bind(1, id)
            .bind(2, report.at)
            .bind(3, report.metrics)
            .bind(4, now_ms())
            .run();
        HostReportOutcome outcome;
        std::map<std::string, const HostReport::VmReport*> reported;
        for (const auto& vm : report.vms) {
            reported[vm.id] = &vm;
        }
        for (const auto& vm : settled_vms(connection, id)) {
            const auto found = reported.find(vm.id);
            const auto next = reported_state(vm.state, found == reported.end() ? nullptr : found->second);
            if (next) {
                outcome.changed.push_back(
                    change_vm(connection, vm.id, [&](Vm& record) { record.state = *next; }));
            }
        }
        for (const auto& vm : report.vms) {
            connection.prepare("UPDATE vms SET figures = ?2 WHERE id = ?1 AND host_id = ?3")
                .bind(1, vm.id)
                .bind(2, vm.figures)
                .bind(3, id)
                .run();
        }
        record_unmanaged(connection, host, report, outcome);
        auto placed = connection.prepare("SELECT id FROM vms WHERE host_id = ?1 OR migration_host_id = ?1");
        placed.bind(1, id);
        while (placed.step()) {
            outcome.placed_vm_ids.push_back(placed.text(0));
        }
        return outcome;
    });
}

void SqliteStore::delete_host(const std::string& id) {
    impl_->write([&](Connection& connection) {
        Host host = require_host(connection, id);
        auto vms = count(connection,
                         "SELECT COUNT(*) FROM vms WHERE (host_id = ?1 OR migration_host_id = ?1) AND "
                         "state != 'unmanaged'",
                         id);
        if (vms > 0) {
            throw ConflictError(
                "host_id", "host " + in_quotes(host.name) + " still has " + std::to_string(vms) + " vms");
        }
        // What its agent found running there is no VM of ours: it goes with the host.
        connection.prepare("DELETE FROM vms WHERE host_id = ?1 AND state = 'unmanaged'").bind(1, id).run();
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
