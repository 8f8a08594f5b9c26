#include "migration/destination.h"

#include <sys/socket.h>

#include "migration/pages.h"

namespace vim::migration {

IncomingConfig Destination::receive_config() {
    reader_.read_header();
    const std::vector<std::uint8_t> config = reader_.read_expected(SectionType::Config);
    IncomingConfig incoming;
    incoming.config = nlohmann::json::parse(config.begin(), config.end(), nullptr, false);
    if (incoming.config.is_discarded()) {
        throw StreamError("migration stream: section 1 (config): not JSON");
    }
    incoming.memory_layout = decode_memory_layout(reader_.read_expected(SectionType::MemoryLayout));
    layout_ = incoming.memory_layout;
    return incoming;
}

std::vector<std::uint8_t> Destination::receive_memory_and_state(vmm::memory::GuestMemory& memory) {
    const auto& regions = memory.regions();
    bool same_shape = regions.size() == layout_.size();
    for (std::size_t i = 0; same_shape && i < regions.size(); ++i) {
        same_shape = regions[i].start == layout_[i].start && regions[i].size == layout_[i].size;
    }
    if (!same_shape) {
        throw StreamError("migration stream: the source's guest RAM is laid out differently from this VM's");
    }
    PageReceiver receiver(memory);
    for (;;) {
        const SectionHeader section = reader_.next_section();
        if (section.type == SectionType::Pages) {
            receiver.receive(reader_, section);
            continue;
        }
        if (section.type == SectionType::Sync) {
            reader_.read_payload(section);
            send_control(socket_.get(), ControlKind::Synced);
            continue;
        }
        if (section.type != SectionType::State) {
            reader_.fail(section, "expected pages or the state");
        }
        std::vector<std::uint8_t> state = reader_.read_payload(section);
        reader_.read_expected(SectionType::End);
        return state;
    }
}

void Destination::ready(std::chrono::milliseconds timeout) {
    send_control(socket_.get(), ControlKind::Ready);
    const ControlMessage answer = receive_control(socket_.get(), timeout);
    if (answer.kind != ControlKind::Go) {
        throw StreamError("migration control: the source answered READY with something other than GO");
    }
}

void Destination::running() { send_control(socket_.get(), ControlKind::Running); }

void Destination::report_error(std::string_view reason) noexcept {
    try {
        send_control(socket_.get(), ControlKind::Error, reason);
        // The source reads the reason before it sees the connection end.
        ::shutdown(socket_.get(), SHUT_WR);
    } catch (...) {
        // The source is gone: there is no one to tell.
    }
}

}  // namespace vim::migration
