#include "sqlite_store_impl.h"

namespace vim::controller::store {

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
}  // namespace vim::controller::store
