#pragma once

// The receiving side of a live migration; the state machines of both sides
// are drawn in source.h. The caller drives it in order:
//
//   Destination incoming(accept_one(listen_tcp(uri)));
//   auto [config, layout] = incoming.receive_config();  // build the VM
//   auto state = incoming.receive_memory_and_state(memory);  // restore it
//   incoming.ready();     // throws unless the source hands over: exit non-zero
//   ... run the guest ...
//   incoming.running();
//
// On any error before the guest runs: report_error(why), exit non-zero.

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "migration/stream.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/sys/fd.h"

namespace vim::migration {

struct IncomingConfig {
    nlohmann::json config;
    std::vector<vmm::memory::RegionLayout> memory_layout;
};

class Destination {
public:
    explicit Destination(vmm::sys::Fd socket) : socket_(std::move(socket)), reader_(socket_.get()) {}

    // The stream header, and the configuration and memory layout of the
    // source's VM. Throws StreamError on a bad stream.
    IncomingConfig receive_config();
    // Guest RAM into `memory`, which must be fresh (zero) and laid out as the
    // source's is (the VM's shape), then the machine state (CBOR) up to End.
    std::vector<std::uint8_t> receive_memory_and_state(vmm::memory::GuestMemory& memory);
    // Says the whole state is here and restored (READY), and waits for the
    // source to hand over (GO). Throws if anything else comes: the connection
    // closed, an unexpected message, nothing within `timeout`.
    void ready(std::chrono::milliseconds timeout = std::chrono::seconds(60));
    // The guest runs (RUNNING): the source measures its downtime up to here.
    void running();
    // Tells the source why the stream is rejected; best effort, never throws.
    void report_error(std::string_view reason) noexcept;

private:
    vmm::sys::Fd socket_;
    StreamReader reader_;
    std::vector<vmm::memory::RegionLayout> layout_;
};

}  // namespace vim::migration
