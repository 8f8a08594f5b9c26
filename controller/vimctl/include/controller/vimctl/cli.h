#pragma once

namespace vim::controller::vimctl {

// vimctl [--controller URL] [--token-file PATH] [--json] <noun> <verb> ...
// Returns the exit status: 0 done, 1 the controller refused (its message on stderr) or an operation
// failed, 2 a bad command line.
int run(int argc, char** argv);

}  // namespace vim::controller::vimctl
