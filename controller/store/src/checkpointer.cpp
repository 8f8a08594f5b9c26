#include "checkpointer.h"

namespace vim::controller::store {

Checkpointer::Checkpointer(std::unique_ptr<Connection> connection, int wal_frames_limit)
    : connection_(std::move(connection)), wal_frames_limit_(wal_frames_limit), thread_([this] { run(); }) {}

Checkpointer::~Checkpointer() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

void Checkpointer::committed(int wal_frames) {
    if (wal_frames < wal_frames_limit_) {
        return;
    }
    {
        std::lock_guard lock(mutex_);
        due_ = true;
    }
    wake_.notify_one();
}

void Checkpointer::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return due_ || stopping_; });
        if (stopping_) {
            return;
        }
        due_ = false;
        lock.unlock();
        try {
            connection_->checkpoint();
        } catch (const std::exception&) {
            // The WAL only grows longer meanwhile: the next commit past the limit asks again, and a file
            // that cannot be written fails the writes themselves, where the caller hears of it.
        }
        lock.lock();
    }
}

}  // namespace vim::controller::store
