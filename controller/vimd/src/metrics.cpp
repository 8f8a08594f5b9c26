#include "metrics.h"

#include <algorithm>
#include <charconv>

namespace vim::controller::vimd {

namespace {

// The shortest text that reads back as the same double.
std::string number_text(double value) {
    char text[32];
    const auto end = std::to_chars(text, text + sizeof(text), value).ptr;
    return std::string(text, end);
}

std::string with_label(const std::string& labels, const std::string& extra) {
    return "{" + (labels.empty() ? extra : labels + "," + extra) + "}";
}

std::string braces(const std::string& labels) { return labels.empty() ? "" : "{" + labels + "}"; }

}  // namespace

std::string label_value(const std::string& value) {
    std::string quoted = "\"";
    for (const char c : value) {
        if (c == '\\' || c == '"') {
            quoted += '\\';
            quoted += c;
        } else if (c == '\n') {
            quoted += "\\n";
        } else {
            quoted += c;
        }
    }
    return quoted + "\"";
}

LatencyHistograms::LatencyHistograms(std::string name, std::string help)
    : name_(std::move(name)), help_(std::move(help)) {}

void LatencyHistograms::observe(const std::string& labels, std::chrono::nanoseconds duration) {
    const double seconds = std::chrono::duration<double>(duration).count();
    const auto bucket = std::lower_bound(kBounds.begin(), kBounds.end(), seconds) - kBounds.begin();
    std::lock_guard lock(mutex_);
    Series& series = series_[labels];
    if (static_cast<std::size_t>(bucket) < kBounds.size()) {
        ++series.buckets[bucket];
    }
    ++series.count;
    series.sum_seconds += seconds;
}

std::string LatencyHistograms::render() const {
    std::string text = "# HELP " + name_ + " " + help_ + "\n# TYPE " + name_ + " histogram\n";
    std::lock_guard lock(mutex_);
    for (const auto& [labels, series] : series_) {
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < kBounds.size(); ++i) {
            cumulative += series.buckets[i];
            text += name_ + "_bucket" + with_label(labels, "le=\"" + number_text(kBounds[i]) + "\"") + " " +
                    std::to_string(cumulative) + "\n";
        }
        text +=
            name_ + "_bucket" + with_label(labels, "le=\"+Inf\"") + " " + std::to_string(series.count) + "\n";
        text += name_ + "_sum" + braces(labels) + " " + number_text(series.sum_seconds) + "\n";
        text += name_ + "_count" + braces(labels) + " " + std::to_string(series.count) + "\n";
    }
    return text;
}

Counters::Counters(std::string name, std::string help) : name_(std::move(name)), help_(std::move(help)) {}

void Counters::add(const std::string& labels, std::uint64_t amount) {
    std::lock_guard lock(mutex_);
    values_[labels] += amount;
}

std::string Counters::render() const {
    std::string text = "# HELP " + name_ + " " + help_ + "\n# TYPE " + name_ + " counter\n";
    std::lock_guard lock(mutex_);
    for (const auto& [labels, value] : values_) {
        text += name_ + braces(labels) + " " + std::to_string(value) + "\n";
    }
    return text;
}

std::string render_gauges(const std::string& name, const std::string& help,
                          const std::map<std::string, double>& values_by_labels) {
    std::string text = "# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n";
    for (const auto& [labels, value] : values_by_labels) {
        text += name + braces(labels) + " " + number_text(value) + "\n";
    }
    return text;
}

}  // namespace vim::controller::vimd
