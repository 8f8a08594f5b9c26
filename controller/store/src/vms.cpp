#include "sqlite_store_impl.h"

namespace vim::controller::store {

namespace {

void validate_vm(const Vm& vm) {
    if (vm.name.empty()) {
        throw InvalidArgumentError("vm name must not be empty");
    }
    // A VM found running on a host may have sizes nobody knows.
    const std::int64_t least = vm.found_running ? 0 : 1;
    if (vm.vcpus < least || vm.memory_mib < least || vm.disk_gib < 0) {
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

}  // namespace

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
                     "?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
               : "UPDATE vms SET name = ?2, vcpus = ?3, memory_mib = ?4, disk_gib = ?5, "
                 "image_id = ?6, host_id = ?7, numa_node = ?8, migration_host_id = ?9, "
                 "migration_numa_node = ?10, state = ?11, server_group_id = ?12, "
                 "host_affinity = ?13, host_anti_affinity = ?14, required_cpu_features = ?15, "
                 "nics = ?16, created_ms = ?17, updated_ms = ?18, figures = ?19, unmanaged_pid = ?20, "
                 "unmanaged_command = ?21, unmanaged_api_socket = ?22, found_running = ?23 WHERE id = ?1";
    auto statement = connection.prepare(sql);
    statement.bind(1, vm.id).bind(2, vm.name).bind(3, vm.vcpus).bind(4, vm.memory_mib).bind(5, vm.disk_gib);
    statement.bind_reference(6, vm.image_id).bind_reference(7, vm.host_id).bind(8, vm.numa_node);
    statement.bind_reference(9, vm.migration_host_id).bind(10, vm.migration_numa_node);
    statement.bind(11, to_string(vm.state)).bind_reference(12, vm.server_group_id);
    statement.bind(13, strings_to_json(vm.host_affinity)).bind(14, strings_to_json(vm.host_anti_affinity));
    statement.bind(15, strings_to_json(vm.required_cpu_features)).bind(16, nics_to_json(vm.nics));
    statement.bind(17, vm.created_ms).bind(18, vm.updated_ms).bind(19, vm.figures).bind(20, vm.unmanaged_pid);
    statement.bind(21, vm.unmanaged_command).bind(22, vm.unmanaged_api_socket).bind(23, vm.found_running);
    try {
        statement.run();
    } catch (const UniqueViolationError& violation) {
        throw ConflictError(violation.column, "vm " + violation.column + " " +
                                                  in_quotes(violation.column == "id" ? vm.id : vm.name) +
                                                  " already exists");
    }
}

VmCreated insert_vm(Connection& connection, const VmCreation& creation) {
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

VmCreated SqliteStore::create_vm(const VmCreation& creation) {
    return impl_->write([&](Connection& connection) { return insert_vm(connection, creation); });
}

std::vector<VmCreationOutcome> SqliteStore::create_vms(std::span<const VmCreation> creations) {
    std::vector<VmCreationOutcome> outcomes;
    outcomes.reserve(creations.size());
    try {
        impl_->write([&](Connection& connection) {
            for (const auto& creation : creations) {
                // One that fails leaves no trace, the others still commit.
                std::optional<VmCreated> created;
                auto error = run_in_savepoint(connection, [&](Connection& in_savepoint) {
                    created = insert_vm(in_savepoint, creation);
                });
                if (error) {
                    outcomes.emplace_back(error);
                } else {
                    outcomes.emplace_back(std::move(*created));
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
    return impl_->read([&](Connection& connection) { return require_vm(connection, id); });
}

std::optional<Vm> SqliteStore::find_vm_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) { return find_vm(connection, "name", name); });
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

Vm change_vm(Connection& connection, const std::string& id, const std::function<void(Vm&)>& change) {
    return change_record<Vm>(
        connection, id, change,
        [&](Connection& connection, const std::string& key) { return require_vm(connection, key); },
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
            validate_vm(changed);
            require_references(connection, changed);
        },
        [&](Connection& connection, const Vm& vm) { write_vm(connection, vm, false); });
}

Vm SqliteStore::update_vm(const std::string& id, const std::function<void(Vm&)>& change) {
    return impl_->write([&](Connection& connection) { return change_vm(connection, id, change); });
}

Vm SqliteStore::place_vm(const std::string& id, const std::string& host_id, int numa_node) {
    return impl_->write([&](Connection& connection) {
        Vm vm = require_vm(connection, id);
        if (!vm.host_id.empty()) {
            throw ConflictError("host_id", "vm " + in_quotes(vm.name) + " is already placed on host " +
                                               in_quotes(host_name(connection, vm.host_id)));
        }
        check_claim(connection, vm, host_id, numa_node);
        vm.host_id = host_id;
        vm.numa_node = numa_node;
        if (vm.state == VmState::pending) {
            vm.state = VmState::scheduled;
        }
        vm.updated_ms = now_ms();
        write_vm(connection, vm, false);
        return vm;
    });
}

Vm SqliteStore::unplace_vm(const std::string& id) {
    return impl_->write([&](Connection& connection) {
        Vm vm = require_vm(connection, id);
        if (!vm.migration_host_id.empty()) {
            throw ConflictError("migration_host_id", "vm " + in_quotes(vm.name) + " is migrating");
        }
        vm.host_id.clear();
        vm.numa_node = -1;
        vm.state = VmState::pending;
        vm.updated_ms = now_ms();
        write_vm(connection, vm, false);
        return vm;
    });
}

Vm SqliteStore::claim_migration(const std::string& id, const std::string& target_host_id, int numa_node) {
    return impl_->write([&](Connection& connection) {
        Vm vm = require_vm(connection, id);
        if (vm.host_id.empty()) {
            throw ConflictError("host_id", "vm " + in_quotes(vm.name) + " is not placed on a host");
        }
        if (!vm.migration_host_id.empty()) {
            throw ConflictError("migration_host_id",
                                "vm " + in_quotes(vm.name) + " is already migrating to host " +
                                    in_quotes(host_name(connection, vm.migration_host_id)));
        }
        if (target_host_id == vm.host_id) {
            throw ClaimRejectedError("vm " + in_quotes(vm.name) + " is already on host " +
                                     in_quotes(host_name(connection, target_host_id)));
        }
        check_claim(connection, vm, target_host_id, numa_node);
        vm.migration_host_id = target_host_id;
        vm.migration_numa_node = numa_node;
        vm.updated_ms = now_ms();
        write_vm(connection, vm, false);
        return vm;
    });
}

Vm SqliteStore::finish_migration(const std::string& id, bool succeeded) {
    return impl_->write([&](Connection& connection) {
        Vm vm = require_vm(connection, id);
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
        write_vm(connection, vm, false);
        return vm;
    });
}

void SqliteStore::delete_vm(const std::string& id) {
    impl_->write([&](Connection& connection) {
        connection.prepare("DELETE FROM vms WHERE id = ?1").bind(1, id).run();
        require_changed(connection, "vm", id);
    });
}
}  // namespace vim::controller::store
