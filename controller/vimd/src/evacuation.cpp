// Host maintenance: the running VMs of a host are live-migrated off it, least dirty first, a few at once.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

#include "service.h"

namespace vim::controller::vimd {

namespace {

// How fast the guest dirties its memory, as its agent last said; 0 when it has not said.
double dirty_rate(const store::Vm& vm) {
    const auto figures = nlohmann::json::parse(vm.figures, nullptr, false);
    if (!figures.is_object()) {
        return 0;
    }
    const auto rate = figures.find("dirty_rate_pages_per_s");
    return rate != figures.end() && rate->is_number() ? rate->get<double>() : 0;
}

}  // namespace

std::vector<store::Vm> Service::vms_on_host(const std::string& host_id) {
    std::vector<store::Vm> vms;
    store::VmFilter filter;
    filter.host_id = host_id;
    store::PageRequest page;
    page.limit = store::kMaxPageLimit;
    for (;;) {
        auto found = store_->list_vms(filter, page);
        for (auto& vm : found.items) {
            if (vm.host_id == host_id) {  // the filter also matches VMs migrating to the host
                vms.push_back(std::move(vm));
            }
        }
        if (found.next_page_token.empty()) {
            return vms;
        }
        page.page_token = found.next_page_token;
    }
}

std::optional<store::Operation> Service::start_evacuation(const store::Host& host) {
    store::OperationFilter under_way;
    under_way.kind = "evacuate";
    under_way.target_id = host.id;
    for (const auto state : {store::OperationState::pending, store::OperationState::running}) {
        under_way.state = state;
        auto found = store_->list_operations(under_way, {});
        if (!found.items.empty()) {
            return found.items.front();
        }
    }
    const auto vms = vms_on_host(host.id);
    const auto running = std::count_if(vms.begin(), vms.end(), [](const store::Vm& vm) {
        return vm.state == store::VmState::running && vm.migration_host_id.empty();
    });
    if (running == 0) {
        return std::nullopt;
    }
    // Each VM costs two agent calls, and the slowest of those running at once sets the pace.
    const auto operation =
        store_->create_operation(new_operation("evacuate", host.id, static_cast<int>(2 * running + 1)));
    runner_->submit(operation.id, [this, host_id = host.id](const OperationRunner::Progress& progress) {
        return OperationRunner::Outcome(run_evacuation(host_id, progress));
    });
    spdlog::info("host {}: evacuating {} running vms (operation {})", host.name, running, operation.id);
    return operation;
}

nlohmann::json Service::run_evacuation(const std::string& host_id,
                                       const OperationRunner::Progress& progress) {
    const auto host = store_->get_host(host_id);
    std::vector<store::Vm> movable;
    nlohmann::json left = nlohmann::json::array();
    for (const auto& vm : vms_on_host(host_id)) {
        if (vm.state == store::VmState::running && vm.migration_host_id.empty()) {
            movable.push_back(vm);
        } else {
            left.push_back({{"vm_id", vm.id},
                            {"name", vm.name},
                            {"state", store::to_string(vm.state)},
                            {"reason", "left on the host: only running VMs are live-migrated"}});
        }
    }
    // Least dirty first: those move fastest, so the most VMs are off the host the soonest.
    std::stable_sort(movable.begin(), movable.end(), [](const store::Vm& a, const store::Vm& b) {
        const double rate_a = dirty_rate(a);
        const double rate_b = dirty_rate(b);
        return rate_a != rate_b ? rate_a < rate_b : a.memory_mib < b.memory_mib;
    });
    std::vector<nlohmann::json> moves(movable.size());
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> done{0};
    const auto mover = [&] {
        for (std::size_t i = next++; i < movable.size(); i = next++) {
            moves[i] = evacuate_vm(movable[i], host_id);
            progress(static_cast<int>(++done * 100 / movable.size()));
        }
    };
    std::vector<std::thread> helpers;
    const std::size_t parallel = std::clamp<std::size_t>(config_.evacuation_parallel, 1, movable.size());
    for (std::size_t i = 1; i < parallel; ++i) {
        helpers.emplace_back(mover);
    }
    mover();
    for (auto& helper : helpers) {
        helper.join();
    }

    nlohmann::json result = {{"host_id", host_id}, {"host", host.name}, {"vms", moves}, {"left", left}};
    std::string failures;
    std::size_t failed = 0;
    for (const auto& move : moves) {
        if (!move.at("ok").get<bool>()) {
            ++failed;
            failures += (failures.empty() ? "" : "; ") + move.at("name").get<std::string>() + ": " +
                        move.at("error").get<std::string>();
        }
    }
    if (failed > 0) {
        throw OperationFailure("evacuation of host " + host.name + ": " + std::to_string(failed) + " of " +
                                   std::to_string(moves.size()) + " vms did not move: " + failures,
                               result);
    }
    return result;
}

nlohmann::json Service::evacuate_vm(const store::Vm& vm, const std::string& host_id) {
    nlohmann::json move = {{"vm_id", vm.id}, {"name", vm.name}, {"from", store_->get_host(host_id).name}};
    try {
        if (!store_->get_host(host_id).maintenance) {
            throw std::runtime_error("not moved: the host left maintenance");
        }
        const auto claimed = begin_migration(vm.id, "");
        move["to"] = store_->get_host(claimed.migration_host_id).name;
        const auto migrated = run_migrate(vm.id, [](int) {});
        for (const char* figure : {"downtime_ms", "total_ms"}) {
            if (migrated.contains(figure)) {
                move[figure] = migrated[figure];
            }
        }
        move["ok"] = true;
        spdlog::info("evacuation: vm {} moved from {} to {}", vm.name, move["from"].get<std::string>(),
                     move["to"].get<std::string>());
    } catch (const std::exception& error) {
        move["ok"] = false;
        move["error"] = error.what();
        spdlog::warn("evacuation: vm {} stays on {}: {}", vm.name, move["from"].get<std::string>(),
                     error.what());
    }
    return move;
}

}  // namespace vim::controller::vimd
