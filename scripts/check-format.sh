#!/usr/bin/env bash
# Checks that every tracked C++ source is formatted as .clang-format says, with Debian 12's
# clang-format 14 (other versions break lines differently, so they are refused).
#   scripts/check-format.sh          lists the files that differ; exits 1 if any do
#   scripts/check-format.sh --diff   also shows what clang-format would change
#   scripts/check-format.sh --fix    formats those files in place
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

usage="usage: scripts/check-format.sh [--diff | --fix]"
mode=check
case "${1:-}" in
    "") ;;
    --diff) mode="diff" ;;
    --fix) mode="fix" ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "check-format: unknown argument '$1'; $usage" >&2; exit 2 ;;
esac

clang_format=clang-format
if command -v clang-format-14 > /dev/null; then
    clang_format=clang-format-14
elif ! command -v clang-format > /dev/null; then
    echo "check-format: clang-format is not installed; scripts/install-deps.sh installs it" >&2
    exit 2
fi
version=$("$clang_format" --version)
if [[ ! $version =~ version\ 14\. ]]; then
    echo "check-format: $clang_format is '$version', not clang-format 14, which .clang-format is" \
        "written for (Debian 12: apt-get install clang-format)" >&2
    exit 2
fi

folders=()
for folder in vmm tests bench controller hwprobe migration; do
    [[ -d $folder ]] && folders+=("$folder")
done
files=()
while IFS= read -r -d '' file; do
    # A tracked file deleted in the work tree is not ours to judge.
    [[ -f $file ]] && files+=("$file")
done < <(git ls-files -z -- "${folders[@]/%//*.cpp}" "${folders[@]/%//*.h}")
if [[ ${#files[@]} -eq 0 ]]; then
    echo "check-format: no tracked *.cpp or *.h under ${folders[*]:-vmm tests bench}" >&2
    exit 2
fi

# One run over all files: clang-format names each file that differs in its warnings.
report=$("$clang_format" --style=file --dry-run "${files[@]}" 2>&1) || {
    echo "$report" >&2
    echo "check-format: $clang_format failed" >&2
    exit 2
}
differing=()
while IFS= read -r file; do
    [[ -n $file ]] && differing+=("$file")
done < <(sed -n 's/^\(.*\):[0-9]*:[0-9]*: warning: code should be clang-formatted.*/\1/p' <<< "$report" | uniq)

if [[ $mode == diff ]]; then
    for file in "${differing[@]}"; do
        "$clang_format" --style=file "$file" | diff -u --label "$file" --label "$file (formatted)" "$file" - || true
    done
fi

if [[ ${#differing[@]} -eq 0 ]]; then
    echo "check-format: ${#files[@]} files formatted as .clang-format says"
    exit 0
fi
if [[ $mode == fix ]]; then
    "$clang_format" --style=file -i "${differing[@]}"
    printf 'check-format: formatted %s\n' "${differing[@]}"
    exit 0
fi
printf 'check-format: not formatted as .clang-format says: %s\n' "${differing[@]}" >&2
echo "check-format: ${#differing[@]} of ${#files[@]} files differ; scripts/check-format.sh --diff shows" \
    "how, scripts/check-format.sh --fix formats them in place" >&2
exit 1
