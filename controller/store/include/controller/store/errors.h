#pragma once

#include <stdexcept>
#include <string>

namespace vim::controller::store {

// Every error the store throws derives from StoreError; the API maps NotFoundError to 404,
// ConflictError (and ClaimRejectedError) to 409, InvalidArgumentError to 400 and the rest to 500.
class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// `vm "0b7c..." not found`, `image "3f2a..." not found` (a reference named by a new record).
class NotFoundError : public StoreError {
public:
    NotFoundError(std::string field, const std::string& message)
        : StoreError(message), field_(std::move(field)) {}
    // The field that named the missing record: "id", "image_id", "server_group_id", "network_id", ...
    const std::string& field() const noexcept { return field_; }

private:
    std::string field_;
};

// `vm name "web-1" already exists`, `network vlan_id 12 already exists`,
// `host "h1" still has 3 VMs`.
class ConflictError : public StoreError {
public:
    ConflictError(std::string field, const std::string& message)
        : StoreError(message), field_(std::move(field)) {}
    // "name", "vlan_id", "key", "host_id", ...
    const std::string& field() const noexcept { return field_; }

private:
    std::string field_;
};

// A placement claim the store refused after re-checking it inside its write transaction, e.g.
// `host "h1": not enough memory: 2048 MiB requested, 1024 MiB free` or
// `host "h2": server group "db" (anti-affinity) already has a VM there`. A scheduler whose view was
// stale retries with a fresh view.
class ClaimRejectedError : public ConflictError {
public:
    explicit ClaimRejectedError(const std::string& message) : ConflictError("host_id", message) {}
};

// `page token "x" is not valid`, `vm state "runing" is not valid`.
class InvalidArgumentError : public StoreError {
public:
    using StoreError::StoreError;
};

}  // namespace vim::controller::store
