#include "sqlite_store_impl.h"

namespace vim::controller::store {

namespace {

void write_image(Connection& connection, const Image& image, const std::string& key) {
    auto statement = connection.prepare(
        key.empty()
            ? "INSERT INTO images (id, name, size_bytes, status, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
            : "UPDATE images SET id = ?1, name = ?2, size_bytes = ?3, status = ?4, created_ms = ?5 "
              "WHERE id = ?6");
    statement.bind(1, image.id)
        .bind(2, image.name)
        .bind(3, image.size_bytes)
        .bind(4, to_string(image.status));
    statement.bind(5, image.created_ms);
    if (!key.empty()) {
        statement.bind(6, key);
    }
    try {
        statement.run();
    } catch (const UniqueViolationError& violation) {
        throw ConflictError(violation.column,
                            "image " + violation.column + " " +
                                in_quotes(violation.column == "id" ? image.id : image.name) +
                                " already exists");
    }
}

Image require_image(Connection& connection, const std::string& id) {
    auto image = select_one<Image>(connection, "images", kImageColumns, "id", id, read_image);
    if (!image) {
        throw NotFoundError("id", "image " + in_quotes(id) + " not found");
    }
    return *std::move(image);
}

}  // namespace

Image SqliteStore::create_image(Image image) {
    if (image.name.empty()) {
        throw InvalidArgumentError("image name must not be empty");
    }
    if (image.id.empty()) {
        image.id = new_id();
    }
    image.created_ms = now_ms();
    impl_->write([&](Connection& connection) { write_image(connection, image, ""); });
    return image;
}

Image SqliteStore::get_image(const std::string& id) {
    return impl_->read([&](Connection& connection) { return require_image(connection, id); });
}

std::optional<Image> SqliteStore::find_image_by_name(const std::string& name) {
    return impl_->read([&](Connection& connection) {
        return select_one<Image>(connection, "images", kImageColumns, "name", name, read_image);
    });
}

Page<Image> SqliteStore::list_images(const PageRequest& page) {
    return impl_->read([&](Connection& connection) {
        return select_page<Image>(connection, "images", kImageColumns, kImageColumnCount, {}, page, false,
                                  read_image);
    });
}

Image SqliteStore::update_image(const std::string& id, const std::function<void(Image&)>& change) {
    return impl_->update<Image>(
        id, change, require_image,
        [](const Image& stored, Image& changed, Connection&) {
            changed.id = stored.id;
            changed.created_ms = stored.created_ms;
        },
        [&](Connection& connection, const Image& image) { write_image(connection, image, image.id); });
}

Image SqliteStore::finish_image_upload(const std::string& upload_id, const std::string& sha256,
                                       std::int64_t size_bytes) {
    return impl_->write([&](Connection& connection) {
        Image image = require_image(connection, upload_id);
        if (count(connection, "SELECT COUNT(*) FROM vms WHERE image_id = ?1", upload_id) > 0) {
            throw ConflictError("id",
                                "image " + in_quotes(image.name) + " is in use and cannot change its id");
        }
        image.id = sha256;
        image.size_bytes = size_bytes;
        image.status = ImageStatus::ready;
        write_image(connection, image, upload_id);
        return image;
    });
}

void SqliteStore::delete_image(const std::string& id) {
    impl_->write([&](Connection& connection) {
        Image image = require_image(connection, id);
        auto vms = count(connection, "SELECT COUNT(*) FROM vms WHERE image_id = ?1", id);
        if (vms > 0) {
            throw ConflictError(
                "image_id", "image " + in_quotes(image.name) + " is used by " + std::to_string(vms) + " vms");
        }
        connection.prepare("DELETE FROM images WHERE id = ?1").bind(1, id).run();
    });
}
}  // namespace vim::controller::store
