#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace vim::controller::vimd {

// Latency histograms with Prometheus' default-like buckets (0.5 ms .. 10 s), keyed by a label set
// written as Prometheus label text (`route="/v1/vms",method="POST",code="202"`).
class LatencyHistograms {
public:
    explicit LatencyHistograms(std::string name, std::string help);

    void observe(const std::string& labels, std::chrono::nanoseconds duration);
    // The histogram in the text exposition format (HELP, TYPE, _bucket, _sum, _count).
    std::string render() const;

private:
    static constexpr std::array<double, 14> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                       0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
    struct Series {
        std::array<std::uint64_t, kBounds.size()> buckets{};  // not cumulative; render() sums them
        std::uint64_t count = 0;
        double sum_seconds = 0;
    };

    std::string name_;
    std::string help_;
    mutable std::mutex mutex_;
    std::map<std::string, Series> series_;
};

// Counters keyed by label text, e.g. operations finished by kind and state.
class Counters {
public:
    Counters(std::string name, std::string help);
    void add(const std::string& labels, std::uint64_t amount = 1);
    std::string render() const;

private:
    std::string name_;
    std::string help_;
    mutable std::mutex mutex_;
    std::map<std::string, std::uint64_t> values_;
};

// Quotes a label value as the exposition format wants (backslash, quote and newline escaped).
std::string label_value(const std::string& value);

// A gauge family written at scrape time: "# HELP", "# TYPE" and one line per label set.
std::string render_gauges(const std::string& name, const std::string& help,
                          const std::map<std::string, double>& values_by_labels);

}  // namespace vim::controller::vimd
