#pragma once

#include <filesystem>
#include <memory>

#include "controller/store/store.h"

namespace vim::controller::store {

// The embedded store: one SQLite file in WAL mode.
//
// Durability (Options::durability): by default synchronous=FULL, so a commit returns after the WAL is
// fsync'd: an acknowledged change survives kill -9 and a power loss. process_crash (synchronous=NORMAL)
// returns once the WAL is written to the page cache: an acknowledged change still survives kill -9, a power
// loss may lose the last commits (never the file: the WAL is fsync'd before every checkpoint), and a
// commit no longer waits for the disk. Either way every transaction is shared (group commit): the writes
// that arrive from many threads while one commit is under way go into the next one together, each under
// its own savepoint so that it still succeeds or fails alone. A create and the operation updates that
// follow it thus cost a share of a commit each.
//
// Threads: all writes go through one connection (SQLite has a single writer anyway) and run inside
// BEGIN IMMEDIATE transactions, so a claim's re-check and its insert see no interleaved writer. Reads use
// a pool of reader connections, which under WAL never wait for the writer.
//
// Schema: versioned by numbered migrations recorded in `schema_version`; opening an older file applies
// the missing ones in one transaction, opening a newer one is refused.
class SqliteStore final : public Store {
public:
    // What an acknowledged commit survives.
    enum class Durability {
        power_loss,     // synchronous=FULL: the WAL is fsync'd before a commit returns
        process_crash,  // synchronous=NORMAL: a crash of the process, not of the machine
        // synchronous=OFF, no fsync at all. Only for bulk loads that can be redone from scratch (a
        // benchmark's fixture); a crash of the machine may then corrupt the file.
        none,
    };

    struct Options {
        int busy_timeout_ms = 5000;  // another process holding the file (a second vimd) waits this long
        std::size_t reader_connections = 4;
        // Migrate only up to this version (0: the latest); lets tests make a file as an older build did.
        int migrate_to = 0;
        Durability durability = Durability::power_loss;
    };

    // Creates the file (and its parent directory) when missing. Errors name the path:
    // `store /var/lib/vim/vimd.db: open: unable to open database file`.
    explicit SqliteStore(const std::filesystem::path& path);
    SqliteStore(const std::filesystem::path& path, const Options& options);
    ~SqliteStore() override;
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    // The schema version this build writes, and the one of the open file.
    static int latest_schema_version();
    int schema_version();

    Host create_host(Host host) override;
    Host get_host(const std::string& id) override;
    std::optional<Host> find_host_by_name(const std::string& name) override;
    Page<Host> list_hosts(const HostFilter& filter, const PageRequest& page) override;
    Host update_host(const std::string& id, const std::function<void(Host&)>& change) override;
    void record_heartbeat(const std::string& id, TimeMs at, const std::string& metrics) override;
    HostReportOutcome record_host_report(const std::string& id, const HostReport& report) override;
    void delete_host(const std::string& id) override;
    Resources host_usage(const std::string& id) override;

    Image create_image(Image image) override;
    Image get_image(const std::string& id) override;
    std::optional<Image> find_image_by_name(const std::string& name) override;
    Page<Image> list_images(const PageRequest& page) override;
    Image update_image(const std::string& id, const std::function<void(Image&)>& change) override;
    Image finish_image_upload(const std::string& upload_id, const std::string& sha256,
                              std::int64_t size_bytes) override;
    void delete_image(const std::string& id) override;

    ServerGroup create_server_group(ServerGroup group) override;
    ServerGroup get_server_group(const std::string& id) override;
    std::optional<ServerGroup> find_server_group_by_name(const std::string& name) override;
    Page<ServerGroup> list_server_groups(const PageRequest& page) override;
    void delete_server_group(const std::string& id) override;

    Network create_network(Network network) override;
    Network get_network(const std::string& id) override;
    std::optional<Network> find_network_by_name(const std::string& name) override;
    Page<Network> list_networks(const PageRequest& page) override;
    void delete_network(const std::string& id) override;
    std::string allocate_address(const std::string& network_id, const std::string& vm_id) override;
    void release_address(const std::string& network_id, const std::string& ip) override;

    VmCreated create_vm(const VmCreation& creation) override;
    std::vector<VmCreationOutcome> create_vms(std::span<const VmCreation> creations) override;
    Vm get_vm(const std::string& id) override;
    std::optional<Vm> find_vm_by_name(const std::string& name) override;
    Page<Vm> list_vms(const VmFilter& filter, const PageRequest& page) override;
    Vm update_vm(const std::string& id, const std::function<void(Vm&)>& change) override;
    Vm place_vm(const std::string& id, const std::string& host_id, int numa_node) override;
    Vm unplace_vm(const std::string& id) override;
    Vm claim_migration(const std::string& id, const std::string& target_host_id, int numa_node) override;
    Vm finish_migration(const std::string& id, bool succeeded) override;
    void delete_vm(const std::string& id) override;

    Operation create_operation(Operation operation) override;
    Operation get_operation(const std::string& id) override;
    Page<Operation> list_operations(const OperationFilter& filter, const PageRequest& page) override;
    Operation update_operation(const std::string& id, const std::function<void(Operation&)>& change) override;
    Operation update_operation_and_target_vm(const std::string& id,
                                             const std::function<void(Operation&)>& change,
                                             const std::function<void(Vm&)>& target_vm_change) override;

    std::optional<IdempotencyRecord> find_idempotency(const std::string& key) override;
    void put_idempotency(const IdempotencyRecord& record) override;
    std::size_t expire_idempotency(TimeMs before) override;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vim::controller::store
