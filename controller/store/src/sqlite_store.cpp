#include "controller/store/sqlite_store.h"

#include <algorithm>

#include "schema.h"
#include "sqlite_store_impl.h"

// The store's methods are spread by concern: hosts.cpp, images.cpp, server_groups.cpp, networks.cpp,
// vms.cpp (with the claim checks in claims.cpp), operations.cpp (and idempotency keys); rows.cpp maps
// records to rows; group_commit.cpp shares commits among writers.

namespace vim::controller::store {

namespace {

// Writes that share one commit, at most: bounds what one caller may wait behind.
constexpr std::size_t kMaxWritesPerCommit = 4096;
// 64 MiB of 4 KiB pages.
constexpr int kCheckpointWalFrames = 16384;

}  // namespace

std::unique_ptr<Connection> SqliteStore::Impl::open_connection() const {
    auto connection = std::make_unique<Connection>(path, options.busy_timeout_ms);
    connection->exec("PRAGMA foreign_keys = ON");
    switch (options.durability) {
    case Durability::power_loss:
        connection->exec("PRAGMA synchronous = FULL");
        break;
    case Durability::process_crash:
        connection->exec("PRAGMA synchronous = NORMAL");
        break;
    case Durability::none:
        connection->exec("PRAGMA synchronous = OFF");
        break;
    }
    // A site's claims touch indexes all over the file: keep it in memory rather than re-reading pages.
    connection->exec("PRAGMA cache_size = -65536");
    // The savepoint of each creation in a batch keeps its undo pages in memory, not a temporary file.
    connection->exec("PRAGMA temp_store = MEMORY");
    return connection;
}

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
    // The writer reads through a mapping rather than a copy per page. Not the readers: a reader that finds
    // the file changed since its last read (after nearly every commit) unmaps all of it, and each munmap
    // stops every core to flush its TLB.
    impl_->writer->exec("PRAGMA mmap_size = 1073741824");
    impl_->writer->exec("PRAGMA journal_mode = WAL");
    impl_->commits = std::make_unique<GroupCommit>(*impl_->writer, kMaxWritesPerCommit);
    migrate(*impl_->writer, options.migrate_to > 0 ? options.migrate_to : latest_schema_version());
    // Checkpoints run beside the commits, not in them, and every 64 MiB of WAL rather than 4 MiB: a hot
    // index page rewritten by many claims is copied into the database once per checkpoint, not once per
    // few commits.
    impl_->writer->exec("PRAGMA wal_autocheckpoint = 0");
    impl_->checkpointer = std::make_unique<Checkpointer>(impl_->open_connection(), kCheckpointWalFrames);
    impl_->writer->on_wal_commit(
        [checkpointer = impl_->checkpointer.get()](int wal_frames) { checkpointer->committed(wal_frames); });
    for (std::size_t i = 0; i < std::max<std::size_t>(1, options.reader_connections); ++i) {
        auto reader = impl_->open_connection();
        reader->exec("PRAGMA query_only = ON");
        impl_->idle_readers.push_back(std::move(reader));
    }
}

SqliteStore::~SqliteStore() = default;

int SqliteStore::latest_schema_version() { return store::latest_schema_version(); }

int SqliteStore::schema_version() {
    return impl_->write([](Connection& connection) { return store::schema_version(connection); });
}

}  // namespace vim::controller::store
