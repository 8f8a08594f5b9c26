#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "sqlite.h"

namespace vim::controller::store {

// Checkpoints the WAL on a thread and a connection of its own, so that no commit waits for it. SQLite's
// automatic checkpoint runs inside the commit that finds the WAL past its limit: that commit, and every
// write queued behind it, waited while the WAL's pages were copied into the database and both files
// fsync'd (about 100 ms for 64 MiB on a busy disk). A passive checkpoint beside the writer copies what no
// reader still needs while commits go on; the writer starts the WAL over once it has all been copied.
class Checkpointer {
public:
    // Checkpoints once the WAL holds `wal_frames_limit` frames or more.
    Checkpointer(std::unique_ptr<Connection> connection, int wal_frames_limit);
    ~Checkpointer();
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;

    // The writer's WAL hook: a commit left `wal_frames` frames in the WAL.
    void committed(int wal_frames);

private:
    void run();

    std::unique_ptr<Connection> connection_;
    const int wal_frames_limit_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool due_ = false;
    bool stopping_ = false;
    std::thread thread_;  // last: starts once the rest is set
};

}  // namespace vim::controller::store
