// A full hwprobe of this host, in-process (what hostd pays at registration) and
// as the `hwprobe` command (fork, exec, probe, JSON out), side by side.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "hwprobe/probe.h"
#include "hwprobe/report.h"

namespace {

void BM_ProbeInProcess(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(vim::hwprobe::probe());
    }
}
BENCHMARK(BM_ProbeInProcess)->Unit(benchmark::kMillisecond);

void BM_ProbeAndJsonInProcess(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(vim::hwprobe::to_json(vim::hwprobe::probe()).dump());
    }
}
BENCHMARK(BM_ProbeAndJsonInProcess)->Unit(benchmark::kMillisecond);

void BM_HwprobeCommand(benchmark::State& state) {
    for (auto _ : state) {
        const pid_t child = ::fork();
        if (child == 0) {
            const int null = ::open("/dev/null", O_WRONLY);
            ::dup2(null, STDOUT_FILENO);
            ::execl(VIM_HWPROBE_PATH, "hwprobe", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            state.SkipWithError(("hwprobe exited with status " + std::to_string(status)).c_str());
            break;
        }
    }
}
BENCHMARK(BM_HwprobeCommand)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
