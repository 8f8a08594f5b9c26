#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace vim::controller::store {

// One SQLite connection with its prepared statements, which it keeps for its lifetime: the store's
// queries are a fixed set, so each is compiled once. Used by one thread at a time.
class Connection {
public:
    class Statement;

    Connection(const std::filesystem::path& path, int busy_timeout_ms);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void exec(const std::string& sql);
    // The cached statement for `sql`, reset and with its bindings cleared when the returned handle goes.
    Statement prepare(const std::string& sql);
    std::int64_t changes() const { return sqlite3_changes64(db_); }
    bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }
    // Throws StoreError `store <path>: <context>: <sqlite message>`, or (for a UNIQUE constraint)
    // UniqueViolationError carrying the column.
    [[noreturn]] void fail(int code, std::string_view context) const;
    const std::filesystem::path& path() const { return path_; }

    // Calls `committed` after each commit of this connection with the number of frames then in the WAL.
    void on_wal_commit(std::function<void(int wal_frames)> committed);
    // Copies what it can of the WAL into the database without waiting for readers or writers (PASSIVE).
    void checkpoint();

private:
    std::filesystem::path path_;
    sqlite3* db_ = nullptr;
    std::function<void(int)> wal_committed_;
    std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

// Thrown by Connection for a UNIQUE constraint ("vms", "name"); the store turns it into a ConflictError
// naming the value.
struct UniqueViolationError {
    std::string table;
    std::string column;
};

class Connection::Statement {
public:
    Statement(Connection& connection, sqlite3_stmt* statement)
        : connection_(&connection), statement_(statement) {}
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    Statement(Statement&& other) noexcept
        : connection_(other.connection_), statement_(std::exchange(other.statement_, nullptr)) {}
    ~Statement();

    // Parameters count from 1, as in SQLite. An empty optional binds NULL.
    Statement& bind(int index, std::int64_t value);
    Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
    Statement& bind(int index, bool value) { return bind(index, static_cast<std::int64_t>(value)); }
    Statement& bind(int index, double value);
    Statement& bind(int index, std::string_view value);
    Statement& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
    Statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
    Statement& bind_null(int index);
    // Binds NULL for "", for the optional references (image, host, group) that foreign keys check.
    Statement& bind_reference(int index, const std::string& value);

    // True while a row is available.
    bool step();
    // Runs a statement that returns no rows.
    void run();

    std::int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
    double real(int column) const { return sqlite3_column_double(statement_, column); }
    std::string text(int column) const;  // "" for NULL
    bool is_null(int column) const { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }

private:
    Connection* connection_;
    sqlite3_stmt* statement_;
};

}  // namespace vim::controller::store
