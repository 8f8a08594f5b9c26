#include "sqlite.h"

#include <utility>

#include "controller/store/errors.h"

namespace vim::controller::store {

Connection::Connection(const std::filesystem::path& path, int busy_timeout_ms) : path_(path) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int code = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (code != SQLITE_OK) {
        std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(code);
        sqlite3_close(db_);
        db_ = nullptr;
        throw StoreError("store " + path.string() + ": open: " + message);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, busy_timeout_ms);
}

Connection::~Connection() {
    for (auto& [sql, statement] : statements_) {
        sqlite3_finalize(statement);
    }
    sqlite3_close(db_);
}

void Connection::fail(int code, std::string_view context) const {
    std::string message = sqlite3_errmsg(db_);
    if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) {
        // "UNIQUE constraint failed: vms.name"
        auto colon = message.rfind(": ");
        std::string qualified = colon == std::string::npos ? "" : message.substr(colon + 2);
        auto dot = qualified.find('.');
        if (dot != std::string::npos) {
            auto comma = qualified.find(',');
            throw UniqueViolationError{qualified.substr(0, dot), qualified.substr(dot + 1, comma - dot - 1)};
        }
    }
    throw StoreError("store " + path_.string() + ": " + std::string(context) + ": " + message);
}

void Connection::exec(const std::string& sql) {
    char* error = nullptr;
    int code = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    if (code != SQLITE_OK) {
        std::string message = error != nullptr ? error : sqlite3_errstr(code);
        sqlite3_free(error);
        auto first_line = sql.substr(0, sql.find('\n'));
        throw StoreError("store " + path_.string() + ": " + first_line + ": " + message);
    }
}

void Connection::on_wal_commit(std::function<void(int wal_frames)> committed) {
    wal_committed_ = std::move(committed);
    sqlite3_wal_hook(
        db_,
        [](void* connection, sqlite3*, const char*, int frames) {
            static_cast<Connection*>(connection)->wal_committed_(frames);
            return SQLITE_OK;
        },
        this);
}

void Connection::checkpoint() {
    const int code = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (code != SQLITE_OK && code != SQLITE_BUSY) {
        fail(code, "checkpoint");
    }
}

Connection::Statement Connection::prepare(const std::string& sql) {
    auto found = statements_.find(sql);
    if (found == statements_.end()) {
        sqlite3_stmt* statement = nullptr;
        int code = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr);
        if (code != SQLITE_OK) {
            fail(code, "prepare " + sql);
        }
        found = statements_.emplace(sql, statement).first;
    }
    return Statement(*this, found->second);
}

Connection::Statement::~Statement() {
    if (statement_ != nullptr) {
        sqlite3_reset(statement_);
        sqlite3_clear_bindings(statement_);
    }
}

Connection::Statement& Connection::Statement::bind(int index, std::int64_t value) {
    sqlite3_bind_int64(statement_, index, value);
    return *this;
}

Connection::Statement& Connection::Statement::bind(int index, double value) {
    sqlite3_bind_double(statement_, index, value);
    return *this;
}

Connection::Statement& Connection::Statement::bind(int index, std::string_view value) {
    sqlite3_bind_text64(statement_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    return *this;
}

Connection::Statement& Connection::Statement::bind_null(int index) {
    sqlite3_bind_null(statement_, index);
    return *this;
}

Connection::Statement& Connection::Statement::bind_reference(int index, const std::string& value) {
    return value.empty() ? bind_null(index) : bind(index, std::string_view(value));
}

bool Connection::Statement::step() {
    int code = sqlite3_step(statement_);
    if (code == SQLITE_ROW) {
        return true;
    }
    if (code == SQLITE_DONE) {
        return false;
    }
    connection_->fail(code, sqlite3_sql(statement_));
}

void Connection::Statement::run() {
    while (step()) {
    }
}

std::string Connection::Statement::text(int column) const {
    const auto* data = sqlite3_column_text(statement_, column);
    if (data == nullptr) {
        return {};
    }
    return std::string(reinterpret_cast<const char*>(data), sqlite3_column_bytes(statement_, column));
}

}  // namespace vim::controller::store
