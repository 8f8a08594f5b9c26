#include "controller/scheduler/scheduler.h"

#include <algorithm>
#include <array>
#include <unordered_map>

namespace vim::controller::scheduler {

namespace {

using store::GroupPolicy;

// In the order they are tried; a host is reported under the first it fails. The filters that restrict
// the candidates to a few named hosts come first, so a decision that only scans those reports the same
// filter for the others as explain does.
enum class Filter {
    passed,
    excluded,
    host_affinity,
    affinity,
    disabled,
    maintenance,
    stale_heartbeat,
    host_anti_affinity,
    anti_affinity,
    capacity,
    cpu_features,
    numa,
    count,
};

constexpr std::array<const char*, static_cast<std::size_t>(Filter::count)> kFilterNames{"",
                                                                                        "excluded",
                                                                                        "host-affinity",
                                                                                        "affinity",
                                                                                        "disabled",
                                                                                        "maintenance",
                                                                                        "stale-heartbeat",
                                                                                        "host-anti-affinity",
                                                                                        "anti-affinity",
                                                                                        "capacity",
                                                                                        "cpu-features",
                                                                                        "numa"};

std::string in_quotes(const std::string& text) { return "\"" + text + "\""; }

// What a request needs of the view, worked out once per decision rather than once per host.
struct Prepared {
    std::int64_t excluded = -1;
    bool restricted_to_named_hosts = false;
    std::vector<std::size_t> named_hosts;    // host affinity, sorted
    std::vector<std::size_t> avoided_hosts;  // host anti-affinity, sorted
    bool hard_group = false;
    bool soft_group = false;
    // (host index, members there), sorted by index
    std::vector<std::pair<std::size_t, std::int64_t>> members;
    std::int64_t group_size = 0;
    std::string missing_feature;                                       // a required feature no host has
    std::vector<std::pair<std::size_t, std::uint64_t>> feature_words;  // word index -> required bits

    std::int64_t members_on(std::size_t host) const {
        auto found =
            std::lower_bound(members.begin(), members.end(), std::pair<std::size_t, std::int64_t>{host, 0},
                             [](const auto& a, const auto& b) { return a.first < b.first; });
        return found != members.end() && found->first == host ? found->second : 0;
    }
};

bool contains(const std::vector<std::size_t>& sorted, std::size_t index) {
    return std::binary_search(sorted.begin(), sorted.end(), index);
}

struct Evaluation {
    Filter filter = Filter::passed;
    int numa_node = -1;
};

}  // namespace

// Friend of ClusterView: the hot loop reads its packed per-host fields.
class Evaluator {
public:
    Evaluator(const ClusterView& view, const Request& request, const Config& config, store::TimeMs now)
        : view_(view), request_(request), config_(config), now_(now) {
        prepare();
    }

    const Prepared& prepared() const { return prepared_; }

    // The hosts a decision has to look at: all, or only the named ones when an affinity names them.
    template <typename Visit>
    std::size_t for_each_candidate(Visit visit) const {
        if (prepared_.restricted_to_named_hosts) {
            for (auto index : prepared_.named_hosts) {
                visit(index);
            }
            return prepared_.named_hosts.size();
        }
        if (prepared_.hard_group && request_.group_policy == GroupPolicy::affinity &&
            !prepared_.members.empty()) {
            for (const auto& [index, members] : prepared_.members) {
                visit(index);
            }
            return prepared_.members.size();
        }
        for (std::size_t index = 0; index < view_.hosts_.size(); ++index) {
            visit(index);
        }
        return view_.hosts_.size();
    }

    Filter skipped_filter() const {
        return prepared_.restricted_to_named_hosts ? Filter::host_affinity : Filter::affinity;
    }

    // With `message`, says why the host failed; without, stays on the fast path.
    Evaluation evaluate(std::size_t index, std::string* message) const {
        const auto& hot = view_.hot_[index];
        const auto& prepared = prepared_;
        auto reject = [&](Filter filter, auto&& describe) {
            if (message != nullptr) {
                *message = describe();
            }
            return Evaluation{filter, -1};
        };
        if (static_cast<std::int64_t>(index) == prepared.excluded) {
            return reject(Filter::excluded, [] { return std::string("the vm is already on this host"); });
        }
        if (prepared.restricted_to_named_hosts && !contains(prepared.named_hosts, index)) {
            return reject(Filter::host_affinity, [] { return std::string("not in the vm's host affinity"); });
        }
        if (prepared.hard_group && request_.group_policy == GroupPolicy::affinity &&
            !prepared.members.empty() && prepared.members_on(index) == 0) {
            return reject(Filter::affinity,
                          [] { return std::string("the server group's vms are on another host"); });
        }
        if (!hot.schedulable) {
            const auto& host = view_.hosts_[index].host;
            if (!host.enabled) {
                return reject(Filter::disabled, [] { return std::string("host is disabled"); });
            }
            return reject(Filter::maintenance, [] { return std::string("host is in maintenance"); });
        }
        if (now_ - hot.last_heartbeat_ms > config_.heartbeat_staleness_ms) {
            return reject(Filter::stale_heartbeat, [&] {
                return "last heartbeat " + std::to_string(now_ - hot.last_heartbeat_ms) + " ms ago, limit " +
                       std::to_string(config_.heartbeat_staleness_ms) + " ms";
            });
        }
        if (!prepared.avoided_hosts.empty() && contains(prepared.avoided_hosts, index)) {
            return reject(Filter::host_anti_affinity,
                          [] { return std::string("in the vm's host anti-affinity"); });
        }
        if (prepared.hard_group && request_.group_policy == GroupPolicy::anti_affinity &&
            prepared.members_on(index) > 0) {
            return reject(Filter::anti_affinity,
                          [] { return std::string("the server group already has a vm here"); });
        }
        if (request_.vcpus > hot.free_vcpus || request_.memory_mib > hot.free_memory_mib ||
            request_.disk_gib > hot.free_disk_gib) {
            return reject(Filter::capacity, [&] { return capacity_message(hot); });
        }
        if (!prepared.missing_feature.empty()) {
            return reject(Filter::cpu_features,
                          [&] { return "lacks CPU feature " + prepared.missing_feature; });
        }
        const auto& bits = view_.feature_bits_[index];
        for (const auto& [word, required] : prepared.feature_words) {
            if (word >= bits.size() || (bits[word] & required) != required) {
                return reject(Filter::cpu_features,
                              [&] { return "lacks CPU features " + missing_features(index); });
            }
        }
        return fit_numa(index, message);
    }

    ScoreBreakdown score(std::size_t index) const {
        ScoreBreakdown score;
        score.resource = resource_score(view_.hot_[index].free_share);
        if (prepared_.soft_group && prepared_.group_size > 0) {
            double here =
                static_cast<double>(prepared_.members_on(index)) / static_cast<double>(prepared_.group_size);
            score.group = request_.group_policy == GroupPolicy::soft_affinity
                              ? config_.soft_affinity_weight * here
                              : -config_.soft_anti_affinity_weight * here;
        }
        score.total = score.resource + score.group;
        return score;
    }

    double resource_score(double free_share) const {
        return config_.resource_weight * (config_.strategy == Strategy::spread ? free_share : 1 - free_share);
    }

    // Whether the best host can be found by walking the hosts best-first: the request leaves the choice
    // to the weighers over the whole cluster (no list of named hosts, no hard affinity to follow), the
    // resource score orders hosts, and a host outside the order (full, disabled, in maintenance) could
    // not take the request anyway.
    bool can_walk_best_first() const {
        bool follows_members = prepared_.hard_group && request_.group_policy == GroupPolicy::affinity &&
                               !prepared_.members.empty();
        return !prepared_.restricted_to_named_hosts && !follows_members && config_.resource_weight > 0 &&
               request_.vcpus >= 1 && request_.memory_mib >= 1;
    }

    // The same choice as scoring every host, found by looking at hosts in the order of their resource
    // score: hosts with members of a soft group (whose group score differs) are weighed first, then the
    // others best-first until none left can beat the best so far. Returns -1 when nothing in the order
    // passed (the caller then scans, to say why).
    std::int64_t walk_best_first(double& best_score, int& best_node) const {
        std::int64_t best = -1;
        auto consider = [&](std::size_t index) {
            Evaluation evaluation = evaluate(index, nullptr);
            if (evaluation.filter != Filter::passed) {
                return false;
            }
            double total = score(index).total;
            if (better(total, index, best_score, best)) {
                best = static_cast<std::int64_t>(index);
                best_score = total;
                best_node = evaluation.numa_node;
            }
            return true;
        };
        if (prepared_.soft_group) {
            for (const auto& [index, members] : prepared_.members) {
                consider(index);
            }
        }
        // True when the walk can stop: this host and all after it score no better than the best.
        auto beyond_best = [&](const ClusterView::OrderKey& key) {
            if (best < 0) {
                return false;
            }
            double resource = resource_score(key.free_share);
            return resource < best_score ||
                   (resource == best_score &&
                    key.name > view_.hosts_[static_cast<std::size_t>(best)].host.name);
        };
        auto visit = [&](const ClusterView::OrderKey& key) {
            if (prepared_.soft_group && prepared_.members_on(key.index) > 0) {
                return true;  // weighed above
            }
            if (beyond_best(key)) {
                return false;
            }
            // The first host that passes is the best of the rest: those after it score lower, or the same
            // with a later name.
            return !consider(key.index);
        };
        const auto& order = view_.by_free_share_;
        if (config_.strategy == Strategy::pack) {
            for (const auto& key : order) {
                if (!visit(key)) {
                    break;
                }
            }
            return best;
        }
        // Spread walks from the most free share down; within equal shares, names still go first to last.
        auto run_end = order.end();
        while (run_end != order.begin()) {
            double share = std::prev(run_end)->free_share;
            auto run_begin = order.lower_bound({share, std::string(), 0});
            for (auto key = run_begin; key != run_end; ++key) {
                if (!visit(*key)) {
                    return best;
                }
            }
            run_end = run_begin;
        }
        return best;
    }

    // Higher score wins; equal scores go to the name that sorts first.
    bool better(double score, std::size_t index, double best_score, std::int64_t best_index) const {
        if (best_index < 0 || score > best_score) {
            return true;
        }
        return score == best_score &&
               view_.hosts_[index].host.name < view_.hosts_[static_cast<std::size_t>(best_index)].host.name;
    }

private:
    void prepare() {
        auto index_of_name = [&](const std::string& name) -> std::int64_t {
            auto found = view_.index_by_name_.find(name);
            return found == view_.index_by_name_.end() ? -1 : static_cast<std::int64_t>(found->second);
        };
        if (!request_.exclude_host_id.empty()) {
            auto found = view_.index_by_id_.find(request_.exclude_host_id);
            prepared_.excluded =
                found == view_.index_by_id_.end() ? -1 : static_cast<std::int64_t>(found->second);
        }
        prepared_.restricted_to_named_hosts = !request_.host_affinity.empty();
        for (const auto& name : request_.host_affinity) {
            if (auto index = index_of_name(name); index >= 0) {
                prepared_.named_hosts.push_back(static_cast<std::size_t>(index));
            }
        }
        for (const auto& name : request_.host_anti_affinity) {
            if (auto index = index_of_name(name); index >= 0) {
                prepared_.avoided_hosts.push_back(static_cast<std::size_t>(index));
            }
        }
        for (auto* hosts : {&prepared_.named_hosts, &prepared_.avoided_hosts}) {
            std::sort(hosts->begin(), hosts->end());
            hosts->erase(std::unique(hosts->begin(), hosts->end()), hosts->end());
        }
        if (!request_.server_group_id.empty()) {
            auto policy = request_.group_policy;
            prepared_.hard_group = policy == GroupPolicy::affinity || policy == GroupPolicy::anti_affinity;
            prepared_.soft_group = !prepared_.hard_group;
            auto group = view_.groups_.find(request_.server_group_id);
            if (group != view_.groups_.end()) {
                prepared_.members.assign(group->second.begin(), group->second.end());
                std::sort(prepared_.members.begin(), prepared_.members.end());
                for (const auto& [index, members] : prepared_.members) {
                    prepared_.group_size += members;
                }
            }
        }
        for (const auto& feature : request_.required_cpu_features) {
            auto found = view_.feature_ids_.find(feature);
            if (found == view_.feature_ids_.end()) {
                prepared_.missing_feature = feature;
                break;
            }
            std::size_t word = found->second / 64;
            auto entry = std::find_if(prepared_.feature_words.begin(), prepared_.feature_words.end(),
                                      [&](const auto& candidate) { return candidate.first == word; });
            if (entry == prepared_.feature_words.end()) {
                prepared_.feature_words.emplace_back(word, 0);
                entry = prepared_.feature_words.end() - 1;
            }
            entry->second |= std::uint64_t{1} << (found->second % 64);
        }
    }

    std::string capacity_message(const ClusterView::Hot& hot) const {
        auto line = [](const char* what, std::int64_t requested, std::int64_t free, const char* unit) {
            return std::string("not enough ") + what + ": " + std::to_string(requested) + unit +
                   " requested, " + std::to_string(std::max<std::int64_t>(0, free)) + unit + " free";
        };
        if (request_.vcpus > hot.free_vcpus) {
            return line("vcpus", request_.vcpus, hot.free_vcpus, "");
        }
        if (request_.memory_mib > hot.free_memory_mib) {
            return line("memory", request_.memory_mib, hot.free_memory_mib, " MiB");
        }
        return line("disk", request_.disk_gib, hot.free_disk_gib, " GiB");
    }

    std::string missing_features(std::size_t index) const {
        const auto& features = view_.hosts_[index].host.cpu_features;
        std::string missing;
        for (const auto& feature : request_.required_cpu_features) {
            if (!features.contains(feature)) {
                missing += (missing.empty() ? "" : ", ") + feature;
            }
        }
        return missing;
    }

    // A VM that fits within one node's size must find a node with that much free; it goes to the node
    // with the most free memory (spread) or the least that fits (pack), the first such node on a tie.
    Evaluation fit_numa(std::size_t index, std::string* message) const {
        const HostState& state = view_.hosts_[index];
        std::int64_t best = -1;
        bool fits_a_node = false;
        for (std::size_t node = 0; node < state.numa_usable.size(); ++node) {
            const auto& usable = state.numa_usable[node];
            if (request_.vcpus > usable.vcpus || request_.memory_mib > usable.memory_mib) {
                continue;
            }
            fits_a_node = true;
            std::int64_t free_vcpus = usable.vcpus - state.numa_used[node].vcpus;
            std::int64_t free_memory = usable.memory_mib - state.numa_used[node].memory_mib;
            if (request_.vcpus > free_vcpus || request_.memory_mib > free_memory) {
                continue;
            }
            if (best < 0) {
                best = static_cast<std::int64_t>(node);
                continue;
            }
            std::int64_t best_free = state.numa_usable[static_cast<std::size_t>(best)].memory_mib -
                                     state.numa_used[static_cast<std::size_t>(best)].memory_mib;
            bool more_free = free_memory > best_free;
            bool less_free = free_memory < best_free;
            if (config_.strategy == Strategy::spread ? more_free : less_free) {
                best = static_cast<std::int64_t>(node);
            }
        }
        if (!fits_a_node) {
            return {Filter::passed, -1};
        }
        if (best < 0) {
            if (message != nullptr) {
                *message = "no NUMA node has " + std::to_string(request_.vcpus) + " vcpus and " +
                           std::to_string(request_.memory_mib) + " MiB free";
            }
            return {Filter::numa, -1};
        }
        return {Filter::passed, state.host.numa_nodes[static_cast<std::size_t>(best)].id};
    }

    const ClusterView& view_;
    const Request& request_;
    const Config& config_;
    store::TimeMs now_;
    Prepared prepared_;
};

namespace {

std::string no_host_reason(std::size_t host_count,
                           const std::array<std::size_t, kFilterNames.size()>& rejected) {
    if (host_count == 0) {
        return "no host can take the vm: no hosts are registered";
    }
    std::string reason = "no host can take the vm: " + std::to_string(host_count) + " hosts";
    bool first = true;
    for (std::size_t filter = 1; filter < rejected.size(); ++filter) {
        if (rejected[filter] > 0) {
            reason += (first ? ", rejected by " : ", ") + std::string(kFilterNames[filter]) + " " +
                      std::to_string(rejected[filter]);
            first = false;
        }
    }
    return reason;
}

Decision chosen(const ClusterView& view, std::int64_t best, double score, int numa_node) {
    const auto& host = view.host(static_cast<std::size_t>(best)).host;
    Decision decision;
    decision.host_id = host.id;
    decision.host_name = host.name;
    decision.numa_node = numa_node;
    decision.score = score;
    decision.reason = "host " + in_quotes(host.name) + " scored highest";
    return decision;
}

}  // namespace

Request Request::for_vm(const store::Vm& vm, const std::optional<store::ServerGroup>& group) {
    Request request;
    request.vcpus = vm.vcpus;
    request.memory_mib = vm.memory_mib;
    request.disk_gib = vm.disk_gib;
    if (group) {
        request.server_group_id = group->id;
        request.group_policy = group->policy;
    }
    request.host_affinity = vm.host_affinity;
    request.host_anti_affinity = vm.host_anti_affinity;
    request.required_cpu_features.assign(vm.required_cpu_features.begin(), vm.required_cpu_features.end());
    return request;
}

Decision Scheduler::decide(const ClusterView& view, const Request& request, store::TimeMs now) const {
    Evaluator evaluator(view, request, config_, now);
    std::array<std::size_t, kFilterNames.size()> rejected{};
    double best_score = 0;
    int best_node = -1;
    std::int64_t best =
        evaluator.can_walk_best_first() ? evaluator.walk_best_first(best_score, best_node) : -1;
    if (best >= 0) {
        return chosen(view, best, best_score, best_node);
    }
    std::size_t visited = evaluator.for_each_candidate([&](std::size_t index) {
        Evaluation evaluation = evaluator.evaluate(index, nullptr);
        if (evaluation.filter != Filter::passed) {
            ++rejected[static_cast<std::size_t>(evaluation.filter)];
            return;
        }
        double score = evaluator.score(index).total;
        if (evaluator.better(score, index, best_score, best)) {
            best = static_cast<std::int64_t>(index);
            best_score = score;
            best_node = evaluation.numa_node;
        }
    });
    if (best < 0) {
        rejected[static_cast<std::size_t>(evaluator.skipped_filter())] += view.host_count() - visited;
        Decision decision;
        decision.reason = no_host_reason(view.host_count(), rejected);
        return decision;
    }
    return chosen(view, best, best_score, best_node);
}

Explanation Scheduler::explain(const ClusterView& view, const Request& request, store::TimeMs now) const {
    Evaluator evaluator(view, request, config_, now);
    Explanation explanation;
    std::array<std::size_t, kFilterNames.size()> rejected{};
    std::int64_t best = -1;
    double best_score = 0;
    int best_node = -1;
    for (std::size_t index = 0; index < view.host_count(); ++index) {
        HostVerdict verdict;
        verdict.host_id = view.host(index).host.id;
        verdict.host_name = view.host(index).host.name;
        Evaluation evaluation = evaluator.evaluate(index, &verdict.message);
        verdict.passed = evaluation.filter == Filter::passed;
        if (verdict.passed) {
            verdict.score = evaluator.score(index);
            verdict.numa_node = evaluation.numa_node;
            if (evaluator.better(verdict.score.total, index, best_score, best)) {
                best = static_cast<std::int64_t>(index);
                best_score = verdict.score.total;
                best_node = evaluation.numa_node;
            }
        } else {
            verdict.rejected_by = kFilterNames[static_cast<std::size_t>(evaluation.filter)];
            ++rejected[static_cast<std::size_t>(evaluation.filter)];
        }
        explanation.hosts.push_back(std::move(verdict));
    }
    std::sort(explanation.hosts.begin(), explanation.hosts.end(),
              [](const HostVerdict& a, const HostVerdict& b) { return a.host_name < b.host_name; });
    if (best < 0) {
        explanation.decision.reason = no_host_reason(view.host_count(), rejected);
    } else {
        explanation.decision = chosen(view, best, best_score, best_node);
    }
    return explanation;
}

}  // namespace vim::controller::scheduler
