// Commits a stream of VM creations into a store and prints each VM's id once its creation is
// acknowledged (committed), for store_crash_test to kill -9 at a random moment.
// Usage: store_crash_child DB_PATH RUN power-loss|process-crash
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controller/store/sqlite_store.h"

using namespace vim::controller::store;

namespace {

// Each id in one write(2), so a kill between lines never leaves half a line that could pass for an id.
void acknowledge(const std::string& id) {
    std::string line = id + "\n";
    if (::write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        _exit(3);
    }
}

template <typename Find, typename Create>
auto find_or_create(Find find, Create create) {
    if (auto found = find()) {
        return *found;
    }
    try {
        return create();
    } catch (const ConflictError&) {
        return *find();
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: store_crash_child DB_PATH RUN power-loss|process-crash\n");
        return 2;
    }
    const std::string durability = argv[3];
    SqliteStore store(argv[1],
                      {.durability = durability == "process-crash" ? SqliteStore::Durability::process_crash
                                                                   : SqliteStore::Durability::power_loss});
    const std::string run = argv[2];
    Host host = find_or_create([&] { return store.find_host_by_name("h"); },
                               [&] {
                                   Host created;
                                   created.name = "h";
                                   created.capacity = {1 << 30, 1LL << 40, 1LL << 30};
                                   return store.create_host(created);
                               });
    Network network = find_or_create([&] { return store.find_network_by_name("net"); },
                                     [&] {
                                         return store.create_network({"", "net", 7, "10.0.0.0/8", 0});
                                     });
    std::atomic<int> next{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < 8; ++t) {
        writers.emplace_back([&, t] {
            for (;;) {
                Vm vm;
                vm.name = run + "-" + std::to_string(next++);
                vm.host_id = host.id;
                vm.state = VmState::scheduled;
                vm.nics = {{network.id, "", ""}};
                Operation operation;
                operation.kind = "create";
                IdempotencyRecord key{"key-" + vm.name, "hash", 202, "{}", 0};
                // The writers share commits (group commit); one makes its creations as batches of one.
                const VmCreation creation{vm, operation, key};
                if (t == 0) {
                    auto outcome = store.create_vms({&creation, 1}).at(0);
                    acknowledge(std::get<VmCreated>(outcome).vm.id);
                } else {
                    acknowledge(store.create_vm(creation).vm.id);
                }
            }
        });
    }
    for (auto& writer : writers) {
        writer.join();
    }
}
