#include "controller/vimctl/cli.h"

int main(int argc, char** argv) { return vim::controller::vimctl::run(argc, argv); }
