#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <set>

#include "controller/store/sqlite_store.h"
#include "vim/testing/temp_dir.h"

namespace vim::controller::store {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Host make_host(const std::string& name, std::int64_t vcpus = 8, std::int64_t memory_mib = 16384,
               std::int64_t disk_gib = 100) {
    Host host;
    host.name = name;
    host.agent_url = "http://127.0.0.1:8471";
    host.capacity = {vcpus, memory_mib, disk_gib};
    host.ratios = {1.0, 1.0, 1.0};
    host.last_heartbeat_ms = now_ms();
    return host;
}

Vm make_vm(const std::string& name, std::int64_t vcpus = 1, std::int64_t memory_mib = 1024) {
    Vm vm;
    vm.name = name;
    vm.vcpus = vcpus;
    vm.memory_mib = memory_mib;
    vm.disk_gib = 1;
    return vm;
}

VmCreation on_host(Vm vm, const Host& host, int numa_node = -1) {
    vm.host_id = host.id;
    vm.numa_node = numa_node;
    vm.state = VmState::scheduled;
    return {std::move(vm), std::nullopt, std::nullopt};
}

template <typename Error, typename Body>
std::string error_of(Body&& body) {
    try {
        body();
    } catch (const Error& error) {
        return error.what();
    }
    return "(no error)";
}

class StoreTest : public ::testing::Test {
protected:
    std::filesystem::path db_path() const {
        return std::filesystem::path(directory_.path("state")) / "vimd.db";
    }

    vim::testing::TempDir directory_;
    std::unique_ptr<SqliteStore> store_ = std::make_unique<SqliteStore>(db_path());
};

TEST_F(StoreTest, HostRoundTripsEveryField) {
    Host host = make_host("h1");
    host.ratios = {4.0, 1.5, 2.0};
    host.reserved = {1, 512, 10};
    host.cpu_features = {"avx2", "sse4_2"};
    host.numa_nodes = {{0, 4, 8192}, {1, 4, 8192}};
    host.inventory = R"({"cpus":8})";
    host.tags = {"rack-1", "ssd"};
    Host created = store_->create_host(host);
    EXPECT_EQ(created.id.size(), 36u);
    EXPECT_GT(created.created_ms, 0);
    EXPECT_EQ(store_->get_host(created.id), created);
    EXPECT_EQ(store_->find_host_by_name("h1"), created);
    EXPECT_EQ(store_->find_host_by_name("h2"), std::nullopt);

    Host changed = store_->update_host(created.id, [](Host& h) {
        h.maintenance = true;
        h.id = "forged";  // identity is kept whatever the change does
    });
    EXPECT_TRUE(changed.maintenance);
    EXPECT_EQ(changed.id, created.id);
    store_->record_heartbeat(created.id, 1234, R"({"load":0.5})");
    Host stored = store_->get_host(created.id);
    EXPECT_TRUE(stored.maintenance);
    EXPECT_EQ(stored.last_heartbeat_ms, 1234);
    EXPECT_EQ(stored.metrics, R"({"load":0.5})");

    store_->delete_host(created.id);
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->get_host(created.id); }),
              "host \"" + created.id + "\" not found");
}

TEST_F(StoreTest, UsableCapacitySubtractsReservedThenAppliesRatio) {
    Host host = make_host("h1", 16, 32768, 200);
    host.ratios = {4.0, 1.0, 1.5};
    host.reserved = {2, 2048, 20};
    EXPECT_EQ(usable_capacity(host), (Resources{56, 30720, 270}));
    host.reserved.vcpus = 40;  // more reserved than there is: nothing, not a negative capacity
    EXPECT_EQ(usable_capacity(host).vcpus, 0);
}

TEST_F(StoreTest, DuplicateNamesAreConflictsNamingTheField) {
    store_->create_host(make_host("h1"));
    store_->create_vm({make_vm("web-1"), std::nullopt, std::nullopt});
    store_->create_image({"", "debian", 10, ImageStatus::ready, 0});
    store_->create_network({"", "net-a", 12, "10.0.0.0/24", 0});
    store_->create_server_group({"", "db", GroupPolicy::anti_affinity, 0});

    try {
        store_->create_vm({make_vm("web-1"), std::nullopt, std::nullopt});
        FAIL() << "a second vm named web-1 was created";
    } catch (const ConflictError& error) {
        EXPECT_STREQ(error.what(), "vm name \"web-1\" already exists");
        EXPECT_EQ(error.field(), "name");
    }
    EXPECT_EQ(error_of<ConflictError>([&] { store_->create_host(make_host("h1")); }),
              "host name \"h1\" already exists");
    EXPECT_EQ(error_of<ConflictError>([&] {
                  store_->create_image({"", "debian", 1, ImageStatus::ready, 0});
              }),
              "image name \"debian\" already exists");
    EXPECT_EQ(error_of<ConflictError>([&] {
                  store_->create_network({"", "net-b", 12, "10.1.0.0/24", 0});
              }),
              "network vlan_id 12 already exists");
    EXPECT_EQ(error_of<ConflictError>([&] {
                  store_->create_server_group({"", "db", GroupPolicy::affinity, 0});
              }),
              "server group name \"db\" already exists");
    // A rename onto a taken name is refused the same way.
    Vm other = store_->create_vm({make_vm("web-2"), std::nullopt, std::nullopt}).vm;
    EXPECT_EQ(
        error_of<ConflictError>([&] { store_->update_vm(other.id, [](Vm& vm) { vm.name = "web-1"; }); }),
        "vm name \"web-1\" already exists");
    EXPECT_EQ(store_->get_vm(other.id).name, "web-2");
}

TEST_F(StoreTest, MissingRecordsAndReferencesAreNotFound) {
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->get_vm("nope"); }), "vm \"nope\" not found");
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->delete_vm("nope"); }), "vm \"nope\" not found");
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->update_vm("nope", [](Vm&) {}); }),
              "vm \"nope\" not found");
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->get_operation("op"); }), "operation \"op\" not found");
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->record_heartbeat("h", 1, "{}"); }),
              "host \"h\" not found");

    Vm vm = make_vm("web-1");
    vm.image_id = "no-such-image";
    try {
        store_->create_vm({vm, std::nullopt, std::nullopt});
        FAIL() << "a vm with an unknown image was created";
    } catch (const NotFoundError& error) {
        EXPECT_STREQ(error.what(), "image \"no-such-image\" not found");
        EXPECT_EQ(error.field(), "image_id");
    }
    vm.image_id.clear();
    vm.server_group_id = "no-such-group";
    EXPECT_EQ(error_of<NotFoundError>([&] {
                  store_->create_vm({vm, std::nullopt, std::nullopt});
              }),
              "server group \"no-such-group\" not found");
    vm.server_group_id.clear();
    vm.nics = {{"no-such-network", "", ""}};
    EXPECT_EQ(error_of<NotFoundError>([&] {
                  store_->create_vm({vm, std::nullopt, std::nullopt});
              }),
              "network \"no-such-network\" not found");
    EXPECT_EQ(store_->find_vm_by_name("web-1"), std::nullopt);
}

TEST_F(StoreTest, ListsPageThroughEveryRecordOnceInCreationOrder) {
    std::vector<std::string> created;
    for (int i = 0; i < 25; ++i) {
        created.push_back(
            store_->create_image({"", "image-" + std::to_string(i), i, ImageStatus::ready, 0}).id);
    }
    std::vector<std::string> listed;
    PageRequest page{10, ""};
    std::vector<std::size_t> sizes;
    do {
        auto result = store_->list_images(page);
        sizes.push_back(result.items.size());
        for (const auto& image : result.items) {
            listed.push_back(image.id);
        }
        page.page_token = result.next_page_token;
    } while (!page.page_token.empty());
    EXPECT_THAT(sizes, ElementsAre(10u, 10u, 5u));
    EXPECT_EQ(listed, created);

    // An exact multiple of the limit ends without an empty extra page.
    auto all = store_->list_images({25, ""});
    EXPECT_EQ(all.items.size(), 25u);
    EXPECT_EQ(all.next_page_token, "");

    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->list_images({10, "abc"});
              }),
              "page token \"abc\" is not valid");
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->list_images({10, "-5"});
              }),
              "page token \"-5\" is not valid");
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->list_images({0, ""});
              }),
              "page limit 0 is not within 1..1000");
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->list_images({1001, ""});
              }),
              "page limit 1001 is not within 1..1000");
}

TEST_F(StoreTest, VmListFiltersCombine) {
    Host h1 = store_->create_host(make_host("h1"));
    Host h2 = store_->create_host(make_host("h2"));
    Network network = store_->create_network({"", "net", 10, "10.0.0.0/24", 0});
    store_->create_vm(on_host(make_vm("web-1"), h1));
    store_->create_vm(on_host(make_vm("web-2"), h2));
    Vm db = make_vm("db-1");
    db.nics = {{network.id, "", ""}};
    store_->create_vm({db, std::nullopt, std::nullopt});
    store_->update_vm(store_->find_vm_by_name("web-2")->id, [](Vm& vm) { vm.state = VmState::running; });

    auto names = [&](const VmFilter& filter) {
        std::vector<std::string> result;
        for (const auto& vm : store_->list_vms(filter, {}).items) {
            result.push_back(vm.name);
        }
        return result;
    };
    EXPECT_THAT(names({}), ElementsAre("web-1", "web-2", "db-1"));
    VmFilter filter;
    filter.host_id = h1.id;
    EXPECT_THAT(names(filter), ElementsAre("web-1"));
    filter = {};
    filter.state = VmState::running;
    EXPECT_THAT(names(filter), ElementsAre("web-2"));
    filter = {};
    filter.name_prefix = "web";
    EXPECT_THAT(names(filter), ElementsAre("web-1", "web-2"));
    filter.state = VmState::scheduled;
    EXPECT_THAT(names(filter), ElementsAre("web-1"));
    filter = {};
    filter.network_id = network.id;
    EXPECT_THAT(names(filter), ElementsAre("db-1"));
    // Prefix text is data, not a pattern.
    filter = {};
    filter.name_prefix = "%";
    EXPECT_THAT(names(filter), ElementsAre());
}

TEST_F(StoreTest, DeletesAreRefusedWhileSomethingUsesTheRecord) {
    Host host = store_->create_host(make_host("h1"));
    Image image = store_->create_image({"", "debian", 1, ImageStatus::ready, 0});
    ServerGroup group = store_->create_server_group({"", "db", GroupPolicy::anti_affinity, 0});
    Network network = store_->create_network({"", "net", 10, "10.0.0.0/24", 0});
    Vm vm = make_vm("web-1");
    vm.image_id = image.id;
    vm.server_group_id = group.id;
    vm.nics = {{network.id, "", ""}};
    Vm created = store_->create_vm(on_host(vm, host)).vm;

    EXPECT_EQ(error_of<ConflictError>([&] { store_->delete_host(host.id); }), "host \"h1\" still has 1 vms");
    EXPECT_EQ(error_of<ConflictError>([&] { store_->delete_image(image.id); }),
              "image \"debian\" is used by 1 vms");
    EXPECT_EQ(error_of<ConflictError>([&] { store_->delete_server_group(group.id); }),
              "server group \"db\" still has 1 vms");
    EXPECT_EQ(error_of<ConflictError>([&] { store_->delete_network(network.id); }),
              "network \"net\" still has 1 nics");

    store_->delete_vm(created.id);
    store_->delete_network(network.id);
    store_->delete_server_group(group.id);
    store_->delete_image(image.id);
    store_->delete_host(host.id);
    EXPECT_TRUE(store_->list_hosts({}, {}).items.empty());
}

TEST_F(StoreTest, ClaimsNeverGoBeyondUsableCapacity) {
    Host host = make_host("h1", 4, 4096, 10);
    host.reserved = {0, 1024, 0};
    host = store_->create_host(host);
    store_->create_vm(on_host(make_vm("a", 2, 2048), host));
    EXPECT_EQ(store_->host_usage(host.id), (Resources{2, 2048, 1}));
    try {
        store_->create_vm(on_host(make_vm("b", 1, 2048), host));
        FAIL() << "the host was over-booked";
    } catch (const ClaimRejectedError& error) {
        EXPECT_STREQ(error.what(), "host \"h1\": not enough memory: 2048 MiB requested, 1024 MiB free");
        EXPECT_EQ(error.field(), "host_id");
    }
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(make_vm("c", 3, 512), host)); }),
              "host \"h1\": not enough vcpus: 3 requested, 2 free");
    EXPECT_EQ(store_->find_vm_by_name("b"), std::nullopt);
    store_->create_vm(on_host(make_vm("d", 2, 1024), host));  // exactly the rest fits
    EXPECT_EQ(store_->host_usage(host.id), (Resources{4, 3072, 2}));
}

TEST_F(StoreTest, ClaimsRecheckHostStateAffinityAndFeatures) {
    Host host = make_host("h1");
    host.cpu_features = {"avx2"};
    host = store_->create_host(host);
    Vm vm = make_vm("a");
    vm.required_cpu_features = {"avx2", "avx512f", "sgx"};
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(vm, host)); }),
              "host \"h1\" lacks CPU features avx512f, sgx");
    vm.required_cpu_features = {"avx2"};
    vm.host_affinity = {"h2"};
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(vm, host)); }),
              "host \"h1\" is not in the vm's host affinity");
    vm.host_affinity.clear();
    vm.host_anti_affinity = {"h1"};
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(vm, host)); }),
              "host \"h1\" is in the vm's host anti-affinity");
    vm.host_anti_affinity.clear();
    store_->update_host(host.id, [](Host& h) { h.maintenance = true; });
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(vm, host)); }),
              "host \"h1\" is in maintenance");
    store_->update_host(host.id, [](Host& h) {
        h.maintenance = false;
        h.enabled = false;
    });
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(vm, host)); }),
              "host \"h1\" is disabled");
    Host missing = host;
    missing.id = "gone";
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(vm, missing)); }),
              "host \"gone\" not found");
    EXPECT_TRUE(store_->list_vms({}, {}).items.empty());
}

TEST_F(StoreTest, ClaimsHonourHardGroupPolicies) {
    Host h1 = store_->create_host(make_host("h1"));
    Host h2 = store_->create_host(make_host("h2"));
    ServerGroup spread = store_->create_server_group({"", "db", GroupPolicy::anti_affinity, 0});
    ServerGroup together = store_->create_server_group({"", "web", GroupPolicy::affinity, 0});
    ServerGroup soft = store_->create_server_group({"", "soft", GroupPolicy::soft_anti_affinity, 0});
    auto member = [](const std::string& name, const ServerGroup& group) {
        Vm vm = make_vm(name);
        vm.server_group_id = group.id;
        return vm;
    };
    store_->create_vm(on_host(member("db-1", spread), h1));
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(member("db-2", spread), h1)); }),
              "host \"h1\": server group \"db\" (anti-affinity) already has a vm there");
    store_->create_vm(on_host(member("db-2", spread), h2));

    store_->create_vm(on_host(member("web-1", together), h2));
    EXPECT_EQ(
        error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(member("web-2", together), h1)); }),
        "host \"h1\": server group \"web\" (affinity) has its vms on host \"h2\"");
    store_->create_vm(on_host(member("web-2", together), h2));

    // Soft policies are the scheduler's preference, never a refusal.
    store_->create_vm(on_host(member("s-1", soft), h1));
    store_->create_vm(on_host(member("s-2", soft), h1));
}

TEST_F(StoreTest, NumaClaimsNeedRoomOnTheirNode) {
    Host host = make_host("h1", 8, 16384);
    host.numa_nodes = {{0, 4, 8192}, {1, 4, 8192}};
    host = store_->create_host(host);
    store_->create_vm(on_host(make_vm("a", 4, 4096), host, 0));
    EXPECT_EQ(
        error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(make_vm("b", 1, 1024), host, 0)); }),
        "host \"h1\" NUMA node 0: not enough vcpus: 1 requested, 0 free");
    EXPECT_EQ(
        error_of<ClaimRejectedError>([&] { store_->create_vm(on_host(make_vm("b", 1, 1024), host, 7)); }),
        "host \"h1\" has no NUMA node 7");
    Vm placed = store_->create_vm(on_host(make_vm("b", 1, 1024), host, 1)).vm;
    EXPECT_EQ(placed.numa_node, 1);
}

TEST_F(StoreTest, PlaceMigrateAndUnplace) {
    Host h1 = store_->create_host(make_host("h1", 4));
    Host h2 = store_->create_host(make_host("h2", 4));
    Vm vm = store_->create_vm({make_vm("a", 4), std::nullopt, std::nullopt}).vm;
    EXPECT_EQ(vm.state, VmState::pending);
    vm = store_->place_vm(vm.id, h1.id, -1);
    EXPECT_EQ(vm.host_id, h1.id);
    EXPECT_EQ(vm.state, VmState::scheduled);
    EXPECT_EQ(error_of<ConflictError>([&] { store_->place_vm(vm.id, h2.id, -1); }),
              "vm \"a\" is already placed on host \"h1\"");

    vm = store_->claim_migration(vm.id, h2.id, -1);
    EXPECT_EQ(vm.migration_host_id, h2.id);
    // While migrating, the VM holds both hosts.
    EXPECT_EQ(store_->host_usage(h2.id).vcpus, 4);
    EXPECT_EQ(store_->host_usage(h1.id).vcpus, 4);
    EXPECT_EQ(error_of<ConflictError>([&] { store_->delete_host(h2.id); }), "host \"h2\" still has 1 vms");
    EXPECT_EQ(error_of<ConflictError>([&] { store_->claim_migration(vm.id, h2.id, -1); }),
              "vm \"a\" is already migrating to host \"h2\"");
    vm = store_->finish_migration(vm.id, true);
    EXPECT_EQ(vm.host_id, h2.id);
    EXPECT_EQ(vm.migration_host_id, "");
    EXPECT_EQ(store_->host_usage(h1.id).vcpus, 0);

    Vm other = store_->create_vm(on_host(make_vm("b", 4), h1)).vm;
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->claim_migration(other.id, h2.id, -1); }),
              "host \"h2\": not enough vcpus: 4 requested, 0 free");
    EXPECT_EQ(error_of<ClaimRejectedError>([&] { store_->claim_migration(other.id, h1.id, -1); }),
              "vm \"b\" is already on host \"h1\"");
    other = store_->unplace_vm(other.id);
    EXPECT_EQ(other.host_id, "");
    EXPECT_EQ(other.state, VmState::pending);
    EXPECT_EQ(store_->host_usage(h1.id).vcpus, 0);
}

TEST_F(StoreTest, UpdateKeepsWhatAClaimWasCheckedAgainst) {
    Host host = store_->create_host(make_host("h1", 2));
    Vm vm = store_->create_vm(on_host(make_vm("a", 2), host)).vm;
    Vm updated = store_->update_vm(vm.id, [](Vm& v) {
        v.state = VmState::running;
        v.vcpus = 64;         // would over-book h1
        v.host_id = "other";  // placement moves only through claims
    });
    EXPECT_EQ(updated.state, VmState::running);
    EXPECT_EQ(updated.vcpus, 2);
    EXPECT_EQ(updated.host_id, host.id);
    EXPECT_EQ(store_->get_vm(vm.id), updated);
}

TEST_F(StoreTest, NicsGetPoolAddressesAndStableMacs) {
    Network network = store_->create_network({"", "net", 10, "10.0.0.0/29", 0});  // .2 to .6
    std::vector<std::string> ips;
    std::string first_mac;
    for (int i = 0; i < 5; ++i) {
        Vm vm = make_vm("vm-" + std::to_string(i));
        vm.nics = {{network.id, "", ""}};
        Vm created = store_->create_vm({vm, std::nullopt, std::nullopt}).vm;
        ASSERT_EQ(created.nics.size(), 1u);
        EXPECT_THAT(created.nics[0].mac, StartsWith("52:54:00:"));
        EXPECT_EQ(store_->get_vm(created.id).nics, created.nics);  // stored, so it stays the same
        ips.push_back(created.nics[0].ip);
    }
    EXPECT_THAT(ips, ElementsAre("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"));
    Vm extra = make_vm("extra");
    extra.nics = {{network.id, "", ""}};
    EXPECT_EQ(error_of<ConflictError>([&] {
                  store_->create_vm({extra, std::nullopt, std::nullopt});
              }),
              "network \"net\": address pool 10.0.0.0/29 is exhausted");
    EXPECT_EQ(store_->find_vm_by_name("extra"), std::nullopt);

    // Deleting a VM frees its address for the next.
    store_->delete_vm(store_->find_vm_by_name("vm-1")->id);
    EXPECT_EQ(store_->create_vm({extra, std::nullopt, std::nullopt}).vm.nics[0].ip, "10.0.0.3");

    Vm fixed = make_vm("fixed");
    fixed.nics = {{network.id, "52:54:00:00:00:01", "10.0.0.9"}};
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->create_vm({fixed, std::nullopt, std::nullopt});
              }),
              "nic ip \"10.0.0.9\" is not in the pool of network \"net\" (10.0.0.0/29)");
    fixed.nics[0].ip = "10.0.0.2";
    EXPECT_EQ(error_of<ConflictError>([&] {
                  store_->create_vm({fixed, std::nullopt, std::nullopt});
              }),
              "network \"net\": ip \"10.0.0.2\" is already in use");
    fixed.nics[0] = {network.id, "zz:54:00:00:00:01", "10.0.0.4"};
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->create_vm({fixed, std::nullopt, std::nullopt});
              }),
              "nic mac \"zz:54:00:00:00:01\" is not a MAC address like 52:54:00:12:34:56");
}

TEST_F(StoreTest, AddressesAllocateAndRelease) {
    Network network = store_->create_network({"", "net", 10, "192.168.4.0/30", 0});  // only .2
    Vm vm = store_->create_vm({make_vm("a"), std::nullopt, std::nullopt}).vm;
    EXPECT_EQ(store_->allocate_address(network.id, vm.id), "192.168.4.2");
    EXPECT_EQ(error_of<ConflictError>([&] { store_->allocate_address(network.id, vm.id); }),
              "network \"net\": address pool 192.168.4.0/30 is exhausted");
    store_->release_address(network.id, "192.168.4.2");
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->release_address(network.id, "192.168.4.2"); }),
              "network \"" + network.id + "\": address \"192.168.4.2\" not found");
    EXPECT_EQ(store_->allocate_address(network.id, vm.id), "192.168.4.2");
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->allocate_address(network.id, "nope"); }),
              "vm \"nope\" not found");
}

TEST_F(StoreTest, HostileNetworkDefinitionsAreRefused) {
    auto refusal = [&](int vlan, const std::string& cidr) {
        return error_of<InvalidArgumentError>([&] { store_->create_network({"", "n", vlan, cidr, 0}); });
    };
    EXPECT_EQ(refusal(0, "10.0.0.0/24"), "network vlan_id 0 is not within 1..4094");
    EXPECT_EQ(refusal(4095, "10.0.0.0/24"), "network vlan_id 4095 is not within 1..4094");
    EXPECT_EQ(refusal(5, "10.0.0.5/24"), "network cidr \"10.0.0.5/24\" has host bits set");
    EXPECT_EQ(refusal(5, "10.0.0.0/31"),
              "network cidr \"10.0.0.0/31\" must have a prefix length from 8 to 30");
    for (const char* bad : {"", "10.0.0.0", "10.0.0/24", "10.0.0.256/24", "10.0.0.0/", "10.0.0.0/2x",
                            "a.b.c.d/8", "10.0.0.0.0/24", "1000.0.0.0/8", "10.0.0.0/24 "}) {
        EXPECT_EQ(refusal(5, bad),
                  "network cidr \"" + std::string(bad) + "\" is not an IPv4 network like 10.0.0.0/24");
    }
    EXPECT_TRUE(store_->list_networks({}).items.empty());
}

TEST_F(StoreTest, HostileRecordsAreRefused) {
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->create_vm({make_vm("a", 0), std::nullopt, std::nullopt});
              }),
              "vm \"a\": vcpus and memory_mib must be positive and disk_gib not negative");
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->create_vm({make_vm(""), std::nullopt, std::nullopt});
              }),
              "vm name must not be empty");
    Host host = make_host("h1");
    host.capacity.vcpus = -1;
    EXPECT_EQ(error_of<InvalidArgumentError>([&] { store_->create_host(host); }),
              "host \"h1\": capacity and reserved must not be negative");
    host = make_host("h1");
    host.ratios.cpu = 0;
    EXPECT_EQ(error_of<InvalidArgumentError>([&] { store_->create_host(host); }),
              "host \"h1\": over-commit ratios must be positive");
    EXPECT_EQ(error_of<InvalidArgumentError>([] { parse_vm_state("runing"); }),
              "vm state \"runing\" is not valid");
    EXPECT_EQ(parse_group_policy("soft-anti-affinity"), GroupPolicy::soft_anti_affinity);
    EXPECT_EQ(to_string(GroupPolicy::anti_affinity), "anti-affinity");
    // Text is data: quotes and SQL in names are stored as given.
    Vm odd = make_vm("x'); DROP TABLE vms; --\"");
    store_->create_vm({odd, std::nullopt, std::nullopt});
    EXPECT_EQ(store_->find_vm_by_name(odd.name)->name, odd.name);
}

TEST_F(StoreTest, CreationWritesVmOperationAndIdempotencyTogether) {
    IdempotencyRecord key{"key-1", "hash", 202, R"({"id":"x"})", 0};
    Operation operation;
    operation.kind = "create";
    VmCreated created = store_->create_vm({make_vm("a"), operation, key});
    ASSERT_TRUE(created.operation);
    EXPECT_EQ(created.operation->target_id, created.vm.id);
    EXPECT_EQ(store_->get_operation(created.operation->id), *created.operation);
    auto remembered = store_->find_idempotency("key-1");
    ASSERT_TRUE(remembered);
    EXPECT_EQ(remembered->response_body, R"({"id":"x"})");
    EXPECT_EQ(remembered->response_status, 202);

    // A retry racing the first under the same key creates nothing at all.
    try {
        store_->create_vm({make_vm("b"), operation, key});
        FAIL() << "a second creation under key-1 was stored";
    } catch (const ConflictError& error) {
        EXPECT_STREQ(error.what(), "idempotency key \"key-1\" already exists");
        EXPECT_EQ(error.field(), "key");
    }
    EXPECT_EQ(store_->find_vm_by_name("b"), std::nullopt);
    EXPECT_EQ(store_->list_operations({}, {}).items.size(), 1u);

    EXPECT_EQ(store_->expire_idempotency(now_ms() + 1), 1u);
    EXPECT_EQ(store_->find_idempotency("key-1"), std::nullopt);
}

TEST_F(StoreTest, BatchedCreationsSucceedOrFailEachOnItsOwn) {
    Host host = store_->create_host(make_host("h1", 2));
    std::vector<VmCreation> batch{on_host(make_vm("a"), host),
                                  on_host(make_vm("b"), host),
                                  on_host(make_vm("c"), host),
                                  {make_vm("a"), std::nullopt, std::nullopt},
                                  {make_vm("d"), std::nullopt, std::nullopt}};
    auto outcomes = store_->create_vms(batch);
    ASSERT_EQ(outcomes.size(), 5u);
    auto failure = [&](std::size_t i) -> std::string {
        if (std::holds_alternative<VmCreated>(outcomes[i])) {
            return "";
        }
        try {
            std::rethrow_exception(std::get<std::exception_ptr>(outcomes[i]));
        } catch (const std::exception& error) {
            return error.what();
        }
    };
    EXPECT_EQ(failure(0), "");
    EXPECT_EQ(failure(1), "");
    EXPECT_EQ(failure(2), "host \"h1\": not enough vcpus: 1 requested, 0 free");
    EXPECT_EQ(failure(3), "vm name \"a\" already exists");
    EXPECT_EQ(failure(4), "");
    std::vector<std::string> names;
    for (const auto& vm : store_->list_vms({}, {}).items) {
        names.push_back(vm.name);
    }
    EXPECT_THAT(names, ElementsAre("a", "b", "d"));
}

// The runner records an operation's success and the VM state it leaves in one transaction: both or neither.
TEST_F(StoreTest, AnOperationAndItsTargetVmChangeTogetherOrNotAtAll) {
    Operation create;
    create.kind = "create";
    VmCreated created = store_->create_vm({make_vm("a"), create, std::nullopt});
    const std::string operation_id = created.operation->id;

    Operation finished = store_->update_operation_and_target_vm(
        operation_id, [](Operation& operation) { operation.state = OperationState::succeeded; },
        [](Vm& vm) { vm.state = VmState::running; });
    EXPECT_EQ(finished.state, OperationState::succeeded);
    EXPECT_EQ(store_->get_operation(operation_id), finished);
    EXPECT_EQ(store_->get_vm(created.vm.id).state, VmState::running);

    // A VM change the store refuses leaves the operation as it was too.
    EXPECT_EQ(error_of<InvalidArgumentError>([&] {
                  store_->update_operation_and_target_vm(
                      operation_id, [](Operation& operation) { operation.state = OperationState::failed; },
                      [](Vm& vm) { vm.name = ""; });
              }),
              "vm name must not be empty");
    EXPECT_EQ(store_->get_operation(operation_id).state, OperationState::succeeded);
    EXPECT_EQ(store_->get_vm(created.vm.id).name, "a");

    // An operation whose VM is gone: nothing changes, and the error names the VM.
    Operation orphan;
    orphan.kind = "delete";
    orphan.target_id = "no-such-vm";
    const Operation stored = store_->create_operation(orphan);
    EXPECT_EQ(error_of<NotFoundError>([&] {
                  store_->update_operation_and_target_vm(
                      stored.id, [](Operation& operation) { operation.state = OperationState::succeeded; },
                      [](Vm& vm) { vm.state = VmState::running; });
              }),
              "vm \"no-such-vm\" not found");
    EXPECT_EQ(store_->get_operation(stored.id).state, OperationState::pending);
}

TEST_F(StoreTest, OperationsUpdateAndListNewestFirst) {
    Operation start;
    start.kind = "start";
    start.target_id = "vm-1";
    start.deadline_ms = 100;
    Operation first = store_->create_operation(start);
    Operation stop;
    stop.kind = "stop";
    stop.target_id = "vm-1";
    Operation second = store_->create_operation(stop);
    Operation updated = store_->update_operation(first.id, [](Operation& operation) {
        operation.state = OperationState::succeeded;
        operation.progress = 100;
        operation.result = R"({"ok":true})";
    });
    EXPECT_EQ(store_->get_operation(first.id), updated);
    EXPECT_EQ(error_of<InvalidArgumentError>(
                  [&] { store_->update_operation(second.id, [](Operation& op) { op.progress = 101; }); }),
              "operation progress 101 is not within 0..100");
    OperationFilter newest_first;
    newest_first.newest_first = true;
    auto newest = store_->list_operations(newest_first, {1, ""});
    ASSERT_EQ(newest.items.size(), 1u);
    EXPECT_EQ(newest.items[0].id, second.id);
    auto older = store_->list_operations(newest_first, {1, newest.next_page_token});
    ASSERT_EQ(older.items.size(), 1u);
    EXPECT_EQ(older.items[0].id, first.id);
    EXPECT_EQ(older.next_page_token, "");
    OperationFilter overdue_filter;
    overdue_filter.deadline_before = 200;
    auto overdue = store_->list_operations(overdue_filter, {});
    ASSERT_EQ(overdue.items.size(), 1u);
    EXPECT_EQ(overdue.items[0].id, first.id);
    OperationFilter pending;
    pending.state = OperationState::pending;
    EXPECT_EQ(store_->list_operations(pending, {}).items.size(), 1u);
}

TEST_F(StoreTest, ImageUploadFinishesUnderItsContentAddress) {
    Image upload = store_->create_image({"", "debian", 0, ImageStatus::uploading, 0});
    std::string sha(64, 'a');
    Image ready = store_->finish_image_upload(upload.id, sha, 4096);
    EXPECT_EQ(ready.id, sha);
    EXPECT_EQ(ready.status, ImageStatus::ready);
    EXPECT_EQ(store_->get_image(sha), ready);
    EXPECT_EQ(error_of<NotFoundError>([&] { store_->get_image(upload.id); }),
              "image \"" + upload.id + "\" not found");
    Image again = store_->create_image({"", "debian-copy", 0, ImageStatus::uploading, 0});
    EXPECT_EQ(error_of<ConflictError>([&] { store_->finish_image_upload(again.id, sha, 4096); }),
              "image id \"" + sha + "\" already exists");
}

TEST_F(StoreTest, EverythingSurvivesReopening) {
    Host host = store_->create_host(make_host("h1"));
    Network network = store_->create_network({"", "net", 10, "10.0.0.0/24", 0});
    Vm vm = make_vm("a");
    vm.nics = {{network.id, "", ""}};
    VmCreated created = store_->create_vm(on_host(vm, host));
    store_.reset();
    store_ = std::make_unique<SqliteStore>(db_path());
    EXPECT_EQ(store_->get_host(host.id), host);
    EXPECT_EQ(store_->get_vm(created.vm.id), created.vm);
    EXPECT_EQ(store_->schema_version(), SqliteStore::latest_schema_version());
}

TEST_F(StoreTest, OlderSchemaIsMigratedKeepingItsRows) {
    store_.reset();
    auto old_path = std::filesystem::path(directory_.path("old.db"));
    {
        SqliteStore::Options as_version_1;
        as_version_1.migrate_to = 1;
        SqliteStore old_store(old_path, as_version_1);
        EXPECT_EQ(old_store.schema_version(), 1);
    }
    // A row as version 1 wrote it: no migration columns yet.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(old_path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(
                  db,
                  "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, numa_node, state, host_affinity, "
                  "host_anti_affinity, required_cpu_features, nics, created_ms, updated_ms) VALUES "
                  "('vm-1', 'old', 2, 512, 1, -1, 'stopped', '[]', '[]', '[]', '[]', 5, 6)",
                  nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);

    SqliteStore migrated(old_path);
    EXPECT_EQ(migrated.schema_version(), SqliteStore::latest_schema_version());
    Vm vm = migrated.get_vm("vm-1");
    EXPECT_EQ(vm.name, "old");
    EXPECT_EQ(vm.state, VmState::stopped);
    EXPECT_EQ(vm.migration_host_id, "");
    EXPECT_EQ(vm.migration_numa_node, -1);
}

// Version 3 keeps each host's usage in a table of its own: a file from before has it filled from its VMs,
// those placed on the host and those migrating to it.
TEST_F(StoreTest, HostUsageIsCountedFromTheVmsOfAnOlderFile) {
    store_.reset();
    auto old_path = std::filesystem::path(directory_.path("old.db"));
    Host host;
    {
        SqliteStore::Options as_version_2;
        as_version_2.migrate_to = 2;
        SqliteStore old_store(old_path, as_version_2);
        Host new_host;
        new_host.name = "h1";
        new_host.capacity = {64, 65536, 1000};
        host = old_store.create_host(new_host);
    }
    // Rows as version 2 wrote them (this build's create_vm writes columns of later versions), placed as
    // version 2 placed them: two on the host's node 0, one migrating to it.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(old_path.c_str(), &db), SQLITE_OK);
    for (int i = 0; i < 3; ++i) {
        const std::string row =
            "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, numa_node, state, host_affinity, "
            "host_anti_affinity, required_cpu_features, nics, created_ms, updated_ms) VALUES ('id-" +
            std::to_string(i) + "', 'vm-" + std::to_string(i) +
            "', 2, 1024, 10, -1, 'scheduled', '[]', '[]', '[]', '[]', 1, 1)";
        ASSERT_EQ(sqlite3_exec(db, row.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    }
    const std::string place = "UPDATE vms SET host_id = '" + host.id +
                              "', numa_node = 0 WHERE name IN ('vm-0', 'vm-1'); "
                              "UPDATE vms SET migration_host_id = '" +
                              host.id + "', migration_numa_node = 1 WHERE name = 'vm-2'";
    ASSERT_EQ(sqlite3_exec(db, place.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);

    SqliteStore migrated(old_path);
    EXPECT_EQ(migrated.host_usage(host.id), (Resources{6, 3072, 30}));
    // And kept from then on.
    migrated.delete_vm(migrated.find_vm_by_name("vm-0")->id);
    migrated.finish_migration(migrated.find_vm_by_name("vm-2")->id, false);
    EXPECT_EQ(migrated.host_usage(host.id), (Resources{2, 1024, 10}));
}

TEST_F(StoreTest, NewerSchemaIsRefused) {
    store_.reset();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_version (version) VALUES (99)", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    EXPECT_EQ(error_of<StoreError>([&] { SqliteStore newer(db_path()); }),
              "store " + db_path().string() + ": schema version 99 is newer than this build's " +
                  std::to_string(SqliteStore::latest_schema_version()));
}

TEST_F(StoreTest, GarbageFileIsReportedWithItsPath) {
    auto path = std::filesystem::path(directory_.path("garbage.db"));
    std::ofstream(path) << std::string(8192, 'x');
    std::string error = error_of<StoreError>([&] { SqliteStore broken(path); });
    EXPECT_THAT(error, StartsWith("store " + path.string() + ": "));
    EXPECT_THAT(error, HasSubstr("not a database"));
    auto unreachable = std::filesystem::path(directory_.path("file")) / "vimd.db";
    std::ofstream(std::filesystem::path(directory_.path("file"))) << "not a directory";
    EXPECT_THAT(error_of<StoreError>([&] { SqliteStore blocked(unreachable); }),
                StartsWith("store " + unreachable.string() + ": create directory "));
}

}  // namespace
}  // namespace vim::controller::store
