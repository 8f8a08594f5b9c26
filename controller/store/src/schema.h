#pragma once

#include "sqlite.h"

namespace vim::controller::store {

int latest_schema_version();
// The version recorded in the file, 0 for a new one.
int schema_version(Connection& connection);
// Applies the migrations after the file's version up to `target`, in one transaction. A file newer than
// this build is refused: its meaning of the columns is unknown here.
void migrate(Connection& connection, int target);

}  // namespace vim::controller::store
