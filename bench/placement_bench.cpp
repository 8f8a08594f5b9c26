// Placement throughput at site scale: 10,000 hosts and 100,000 VMs in a SQLite store, with anti-affinity
// groups in play. Measures the decision alone on the in-memory view (one thread, and all cores on a
// shared view), the explain of one request, and decisions whose claims are committed durably
// (synchronous=FULL, concurrent claims sharing commits in the store) from many concurrent callers.
//
// The store lives in a fresh directory under $PLACEMENT_BENCH_DIR (default: the current directory), which
// must be on the disk to be measured: on tmpfs an fsync costs nothing.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <thread>

#include "controller/scheduler/placement.h"
#include "controller/scheduler/scheduler.h"
#include "controller/store/sqlite_store.h"

namespace {

using namespace vim::controller;

constexpr int kHosts = 10'000;
constexpr int kVms = 100'000;
constexpr int kAntiAffinityGroups = 2'000;
constexpr double kGroupMemberShare = 0.3;

struct Site {
    std::filesystem::path directory;
    std::filesystem::path db;
    store::TimeMs now = store::now_ms();
    std::vector<std::string> groups;  // anti-affinity group ids
    std::vector<scheduler::Request> requests;
    std::unique_ptr<scheduler::ClusterView> view;

    ~Site() {
        std::error_code ignored;
        std::filesystem::remove_all(directory, ignored);
    }

    scheduler::Request random_request(std::mt19937& random) const {
        scheduler::Request request;
        request.vcpus = std::uniform_int_distribution<int>(1, 8)(random);
        request.memory_mib = 1024 * std::uniform_int_distribution<int>(1, 16)(random);
        request.disk_gib = std::uniform_int_distribution<int>(10, 40)(random);
        if (std::bernoulli_distribution(kGroupMemberShare)(random)) {
            request.server_group_id =
                groups[std::uniform_int_distribution<std::size_t>(0, groups.size() - 1)(random)];
            request.group_policy = store::GroupPolicy::anti_affinity;
        }
        if (std::bernoulli_distribution(0.1)(random)) {
            request.required_cpu_features = {"avx512f"};
        }
        return request;
    }
};

store::Vm vm_for(const scheduler::Request& request, std::string name) {
    store::Vm vm;
    vm.name = std::move(name);
    vm.vcpus = request.vcpus;
    vm.memory_mib = request.memory_mib;
    vm.disk_gib = request.disk_gib;
    vm.server_group_id = request.server_group_id;
    vm.required_cpu_features.insert(request.required_cpu_features.begin(),
                                    request.required_cpu_features.end());
    vm.state = store::VmState::running;
    return vm;
}

// Built once: filling the store is a bulk load (no fsync), placed by the scheduler itself and claimed
// through the store in batches, so the file holds what a busy site would.
Site& site() {
    // Destroyed at exit (removing its directory) after the benchmarks' own statics, made later.
    static std::unique_ptr<Site> built = [] {
        auto site = std::make_unique<Site>();
        const char* base = std::getenv("PLACEMENT_BENCH_DIR");
        std::string pattern =
            (std::filesystem::path(base != nullptr ? base : ".") / "placement-bench-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            std::perror("mkdtemp");
            std::exit(1);
        }
        site->directory = pattern;
        site->db = site->directory / "vimd.db";
        auto started = std::chrono::steady_clock::now();
        store::SqliteStore::Options bulk;
        bulk.durability = store::SqliteStore::Durability::none;
        store::SqliteStore store(site->db, bulk);
        std::mt19937 random(42);
        scheduler::ClusterView view;
        for (int i = 0; i < kHosts; ++i) {
            store::Host host;
            char name[32];
            std::snprintf(name, sizeof name, "host-%05d", i);
            host.name = name;
            host.capacity = {i % 2 == 0 ? 32 : 64, i % 2 == 0 ? 131072 : 262144, 4000};
            host.numa_nodes = {{0, host.capacity.vcpus / 2, host.capacity.memory_mib / 2},
                               {1, host.capacity.vcpus / 2, host.capacity.memory_mib / 2}};
            host.cpu_features = {"sse4_2", "avx2"};
            if (i % 2 == 1) {
                host.cpu_features.insert("avx512f");
            }
            host.maintenance = i % 50 == 0;
            host.enabled = i % 100 != 1;
            host.last_heartbeat_ms = site->now;
            view.sync_host(store.create_host(host));
        }
        for (int i = 0; i < kAntiAffinityGroups; ++i) {
            site->groups.push_back(store
                                       .create_server_group({"", "group-" + std::to_string(i),
                                                             store::GroupPolicy::anti_affinity, 0})
                                       .id);
        }
        scheduler::Scheduler scheduler;
        std::vector<store::VmCreation> batch;
        auto flush = [&] {
            for (const auto& outcome : store.create_vms(batch)) {
                if (std::holds_alternative<std::exception_ptr>(outcome)) {
                    std::rethrow_exception(std::get<std::exception_ptr>(outcome));
                }
            }
            batch.clear();
        };
        for (int i = 0; i < kVms; ++i) {
            scheduler::Request request = site->random_request(random);
            scheduler::Decision decision = scheduler.decide(view, request, site->now);
            if (!decision.placed()) {
                continue;
            }
            store::Vm vm = vm_for(request, "vm-" + std::to_string(i));
            vm.id = store::new_id();
            vm.host_id = decision.host_id;
            vm.numa_node = decision.numa_node;
            view.sync_vm(vm);
            batch.push_back({vm, std::nullopt, std::nullopt});
            if (batch.size() == 5000) {
                flush();
            }
        }
        flush();
        for (int i = 0; i < 4096; ++i) {
            site->requests.push_back(site->random_request(random));
        }
        double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        started = std::chrono::steady_clock::now();
        site->view = std::make_unique<scheduler::ClusterView>(scheduler::ClusterView::load(store));
        double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::int64_t placed = 0;
        for (std::size_t h = 0; h < site->view->host_count(); ++h) {
            placed += site->view->host(h).vm_count;
        }
        std::fprintf(
            stderr,
            "site: %d hosts, %lld vms placed, filled in %.1f s, view loaded from the store in %.2f s\n",
            kHosts, static_cast<long long>(placed), fill_s, load_s);
        return site;
    }();
    return *built;
}

void BM_DecideInMemory(benchmark::State& state) {
    Site& cluster = site();
    scheduler::Scheduler scheduler;
    std::size_t next = static_cast<std::size_t>(state.thread_index()) * 997;
    std::int64_t placed = 0;
    for (auto _ : state) {
        auto decision =
            scheduler.decide(*cluster.view, cluster.requests[next++ % cluster.requests.size()], cluster.now);
        placed += decision.placed() ? 1 : 0;
        benchmark::DoNotOptimize(decision);
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["placed_share"] =
        benchmark::Counter(static_cast<double>(placed) / static_cast<double>(state.iterations()),
                           benchmark::Counter::kAvgThreads);
}
BENCHMARK(BM_DecideInMemory)
    ->Threads(1)
    ->Threads(static_cast<int>(std::thread::hardware_concurrency()))
    ->UseRealTime();

void BM_ExplainInMemory(benchmark::State& state) {
    Site& cluster = site();
    scheduler::Scheduler scheduler;
    std::size_t next = 0;
    for (auto _ : state) {
        auto explanation =
            scheduler.explain(*cluster.view, cluster.requests[next++ % cluster.requests.size()], cluster.now);
        benchmark::DoNotOptimize(explanation);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ExplainInMemory)->UseRealTime();

// Each thread is a caller (an API request) placing one VM per iteration; an iteration ends when the
// claim is committed. Concurrent callers share commits (group commit).
struct Committing {
    std::unique_ptr<store::SqliteStore> store;
    std::unique_ptr<scheduler::Placement> placement;

    explicit Committing(store::SqliteStore::Durability durability) {
        Site& cluster = site();
        store::SqliteStore::Options options;
        options.durability = durability;
        store = std::make_unique<store::SqliteStore>(cluster.db, options);
        scheduler::Config config;
        // The fixture's heartbeats are from when it was built; keep those hosts fresh for the whole run.
        config.heartbeat_staleness_ms = 24LL * 3600 * 1000;
        placement = std::make_unique<scheduler::Placement>(*store, config);
    }
};

void place_and_commit(benchmark::State& state, Committing& committing) {
    Site& cluster = site();
    static std::atomic<std::int64_t> serial{0};
    std::mt19937 random(static_cast<unsigned>(state.thread_index()) + 7);
    std::int64_t refused = 0;
    for (auto _ : state) {
        scheduler::Request request = cluster.random_request(random);
        try {
            committing.placement->create_vm(
                {vm_for(request, "bench-" + std::to_string(serial++)), std::nullopt, std::nullopt});
        } catch (const scheduler::NoValidHostError&) {
            ++refused;
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["refused"] = static_cast<double>(refused);
}

// Durable: synchronous=FULL, each acknowledged claim survives kill -9 and power loss.
void BM_PlaceAndCommit(benchmark::State& state) {
    static Committing durable(store::SqliteStore::Durability::power_loss);
    place_and_commit(state, durable);
}
BENCHMARK(BM_PlaceAndCommit)->Threads(1)->Threads(16)->Threads(64)->Threads(256)->UseRealTime();

// The same without fsync, for what the disk's flushes cost above (not a way to run vimd).
void BM_PlaceAndCommitWithoutFsync(benchmark::State& state) {
    static Committing volatile_store(store::SqliteStore::Durability::none);
    place_and_commit(state, volatile_store);
}
BENCHMARK(BM_PlaceAndCommitWithoutFsync)->Threads(256)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
