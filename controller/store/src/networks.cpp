#include <random>
#include <unordered_set>

#include "sqlite_store_impl.h"

namespace vim::controller::store {

namespace {

std::string format_mac(std::uint32_t low24) {
    char text[18];
    std::snprintf(text, sizeof text, "52:54:00:%02x:%02x:%02x", (low24 >> 16) & 0xff, (low24 >> 8) & 0xff,
                  low24 & 0xff);
    return text;
}

bool is_mac(const std::string& text) {
    if (text.size() != 17) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
        bool separator = i % 3 == 2;
        if (separator ? text[i] != ':' : !std::isxdigit(static_cast<unsigned char>(text[i]))) {
            return false;
        }
    }
    return true;
}

std::string next_free_address(Connection& connection, const Network& network, const Ipv4Network& pool) {
    std::unordered_set<std::int64_t> taken;
    auto statement = connection.prepare("SELECT ip FROM addresses WHERE network_id = ?1");
    statement.bind(1, network.id);
    while (statement.step()) {
        taken.insert(parse_ipv4(statement.text(0)));
    }
    for (std::int64_t address = pool.first_pool_address(); address <= pool.last_pool_address(); ++address) {
        if (!taken.contains(address)) {
            return format_ipv4(static_cast<std::uint32_t>(address));
        }
    }
    throw ConflictError("network_id", "network " + in_quotes(network.name) + ": address pool " +
                                          network.cidr + " is exhausted");
}

std::string free_mac(Connection& connection, const std::string& network_id) {
    thread_local std::mt19937 generator{std::random_device{}()};
    for (;;) {
        std::string mac = format_mac(generator() & 0xffffff);
        auto statement =
            connection.prepare("SELECT COUNT(*) FROM addresses WHERE network_id = ?1 AND mac = ?2");
        statement.bind(1, network_id).bind(2, mac);
        statement.step();
        if (statement.integer(0) == 0) {
            return mac;
        }
    }
}

void insert_address(Connection& connection, const Network& network, const std::string& ip,
                    const std::string& mac, const std::string& vm_id) {
    auto statement =
        connection.prepare("INSERT INTO addresses (network_id, ip, mac, vm_id) VALUES (?1, ?2, ?3, ?4)");
    statement.bind(1, network.id).bind(2, ip).bind(3, mac).bind(4, vm_id);
    try {
        statement.run();
    } catch (const UniqueViolationError& violation) {
        std::string what = violation.column == "mac" ? "mac " + in_quotes(mac) : "ip " + in_quotes(ip);
        throw ConflictError(violation.column,
                            "network " + in_quotes(network.name) + ": " + what + " is already in use");
    }
}

}  // namespace

void allocate_nics(Connection& connection, Vm& vm) {
    for (auto& nic : vm.nics) {
        auto network =
            select_one<Network>(connection, "networks", kNetworkColumns, "id", nic.network_id, read_network);
        if (!network) {
            throw NotFoundError("network_id", "network " + in_quotes(nic.network_id) + " not found");
        }
        Ipv4Network pool = Ipv4Network::parse(network->cidr);
        if (nic.ip.empty()) {
            nic.ip = next_free_address(connection, *network, pool);
        } else {
            std::int64_t address = parse_ipv4(nic.ip);
            if (address < pool.first_pool_address() || address > pool.last_pool_address()) {
                throw InvalidArgumentError("nic ip " + in_quotes(nic.ip) + " is not in the pool of network " +
                                           in_quotes(network->name) + " (" + network->cidr + ")");
            }
        }
        if (nic.mac.empty()) {
            nic.mac = free_mac(connection, nic.network_id);
        } else if (!is_mac(nic.mac)) {
            throw InvalidArgumentError("nic mac " + in_quotes(nic.mac) +
                                       " is not a MAC address like 52:54:00:12:34:56");
        }
        insert_address(connection, *network, nic.ip, nic.mac, vm.id);
    }
}

Network SqliteStore::create_network(Network network) {
    if (network.name.empty()) {
        throw InvalidArgumentError("network name must not be empty");
    }
    if (network.vlan_id < 1 || network.vlan_id > 4094) {
        throw InvalidArgumentError("network vlan_id " + std::to_string(network.vlan_id) +
                                   " is not within 1..4094");
    }
    Ipv4Network::parse(network.cidr);
    if (network.id.empty()) {
        network.id = new_id();
    }
    network.created_ms = now_ms();
    impl_->write([&](Connection& connection) {
        auto statement = connection.prepare(
            "INSERT INTO networks (id, name, vlan_id, cidr, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
        statement.bind(1, network.id).bind(2, network.name).bind(3, network.vlan_id).bind(4, network.cidr);
        statement.bind(5, network.created_ms);
        try {
            statement.run();
        } catch (const UniqueViolationError& violation) {
            std::string value = violation.column == "vlan_id" ? std::to_string(network.vlan_id)
                                : violation.column == "id"    ? in_quotes(network.id)
                                                              : in_quotes(network.name);
            throw ConflictError(violation.column,
                                "network " + violation.column + " " + value + " already exists");
        }
    });
    return network;
}

Network SqliteStore::get_network(const std::string& id) {
    return impl_->read([&](Connection& connection) {
        auto network = select_one<Network>(connection, "networks", kNetworkColumns, "id", id, read_network);
        if (!network) {
            throw NotFoundError("id", "network " + in_quotes(id) + " not found");
        }
        return *std::move(network);
    });
}

std::optional<Network> SqliteStore::find_network_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) {
        return select_one<Network>(connection, "networks", kNetworkColumns, "name", name, read_network);
    });
}

Page<Network> SqliteStore::list_networks(const PageRequest& page) {
    return impl_->read([&](Connection& connection) {
        return select_page<Network>(connection, "networks", kNetworkColumns, kNetworkColumnCount, {}, page,
                                    false, read_network);
    });
}

void SqliteStore::delete_network(const std::string& id) {
    impl_->write([&](Connection& connection) {
        auto network = select_one<Network>(connection, "networks", kNetworkColumns, "id", id, read_network);
        if (!network) {
            throw NotFoundError("id", "network " + in_quotes(id) + " not found");
        }
        auto nics = count(connection, "SELECT COUNT(*) FROM addresses WHERE network_id = ?1", id);
        if (nics > 0) {
            throw ConflictError("network_id", "network " + in_quotes(network->name) + " still has " +
                                                  std::to_string(nics) + " nics");
        }
        connection.prepare("DELETE FROM networks WHERE id = ?1").bind(1, id).run();
    });
}

std::string SqliteStore::allocate_address(const std::string& network_id, const std::string& vm_id) {
    return impl_->write([&](Connection& connection) {
        auto network =
            select_one<Network>(connection, "networks", kNetworkColumns, "id", network_id, read_network);
        if (!network) {
            throw NotFoundError("network_id", "network " + in_quotes(network_id) + " not found");
        }
        require_vm(connection, vm_id);
        std::string ip = next_free_address(connection, *network, Ipv4Network::parse(network->cidr));
        insert_address(connection, *network, ip, free_mac(connection, network_id), vm_id);
        return ip;
    });
}

void SqliteStore::release_address(const std::string& network_id, const std::string& ip) {
    impl_->write([&](Connection& connection) {
        connection.prepare("DELETE FROM addresses WHERE network_id = ?1 AND ip = ?2")
            .bind(1, network_id)
            .bind(2, ip)
            .run();
        if (connection.changes() == 0) {
            throw NotFoundError(
                "ip", "network " + in_quotes(network_id) + ": address " + in_quotes(ip) + " not found");
        }
    });
}

}  // namespace vim::controller::store
