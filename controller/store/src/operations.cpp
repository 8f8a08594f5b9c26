#include "sqlite_store_impl.h"

namespace vim::controller::store {

namespace {

void write_operation(Connection& connection, const Operation& operation, bool insert) {
    std::string sql = insert ? std::string("INSERT INTO operations (") + kOperationColumns +
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

}  // namespace

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

// --- operations -------------------------------------------------------------------------------------------

Operation SqliteStore::create_operation(Operation operation) {
    impl_->write([&](Connection& connection) { insert_operation(connection, operation); });
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

Operation change_operation(Connection& connection, const std::string& id,
                           const std::function<void(Operation&)>& change) {
    return change_record<Operation>(
        connection, id, change,
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
            write_operation(connection, operation, false);
        });
}

Operation SqliteStore::update_operation(const std::string& id,
                                        const std::function<void(Operation&)>& change) {
    return impl_->write([&](Connection& connection) { return change_operation(connection, id, change); });
}

Operation SqliteStore::update_operation_and_target_vm(const std::string& id,
                                                      const std::function<void(Operation&)>& change,
                                                      const std::function<void(Vm&)>& target_vm_change) {
    return impl_->write([&](Connection& connection) {
        auto operation = change_operation(connection, id, change);
        change_vm(connection, operation.target_id, target_vm_change);
        return operation;
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
    impl_->write([&](Connection& connection) { insert_idempotency(connection, record); });
}

std::size_t SqliteStore::expire_idempotency(TimeMs before) {
    return impl_->write([&](Connection& connection) {
        connection.prepare("DELETE FROM idempotency WHERE created_ms < ?1").bind(1, before).run();
        return static_cast<std::size_t>(connection.changes());
    });
}

}  // namespace vim::controller::store
