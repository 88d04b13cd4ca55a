#!/usr/bin/env bash
# Compares two builds of OnceLedger on the same disk in one session: builds both in release
# mode, then runs their benchmarks alternately (A B, B A, A B, …) so that a disk or host whose
# speed drifts affects both alike, prints every run's table, and ends with the target rows of
# all runs side by side.
#
#   Benchmarks/compare.sh [-n RUNS] [-d DIR] A B [-- BENCH-OPTIONS...]
#
# A and B are each a git revision of this repository (exported with `git archive` into
# .build-compare/<commit>/, built there once and kept) or a directory holding a checkout (`.`
# is the working tree, uncommitted changes included). A build that has Benchmarks/Package.swift
# runs `onceledger-bench`; an older one (before the benchmark became its own package) runs
# `onceledger bench` from its root package, so a comparison can reach back past the move.
#
#   -n RUNS  runs of each build (default 2)
#   -d DIR   the directory each run measures in (default: the current directory; it must be
#            on the disk you mean to measure, not a tmpfs)
#   after --, options passed to every run (e.g. --seconds 2 --skip-ledger)
#
# Example: the working tree against its parent commit, three runs each:
#   Benchmarks/compare.sh -n 3 -d /mnt/data HEAD~1 .
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

runs=2
dir=$(pwd)
while getopts "n:d:" option; do
    case "$option" in
    n) runs="$OPTARG" ;;
    d) dir="$OPTARG" ;;
    *) sed -n '2,21p' "$0" >&2; exit 16 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { sed -n '2,21p' "$0" >&2; exit 16; }
a="$1" b="$2"
shift 2
[ "${1:-}" != "--" ] || shift
case "$runs" in '' | *[!0-9]* | 0) echo "compare: -n wants a positive number" >&2; exit 16 ;; esac

out="$repo/.build-compare/runs-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

# Prints the source directory of build $1 (a directory, or a revision exported once).
source_of() {
    if [ -d "$1" ]; then
        (cd "$1" && pwd)
        return
    fi
    local commit
    commit=$(git -C "$repo" rev-parse --verify "$1^{commit}") || { echo "compare: '$1' is neither a directory nor a revision" >&2; exit 16; }
    local tree="$repo/.build-compare/$commit"
    if [ ! -f "$tree/Package.swift" ]; then
        rm -rf "$tree"
        mkdir -p "$tree"
        git -C "$repo" archive "$commit" | tar -x -C "$tree"
    fi
    echo "$tree"
}

# Builds the benchmark of source directory $1; prints the command that runs it.
build() {
    if [ -f "$1/Benchmarks/Package.swift" ]; then
        swift build -c release --package-path "$1/Benchmarks" --product onceledger-bench >&2
        echo "$1/Benchmarks/.build/release/onceledger-bench"
    else
        swift build -c release --package-path "$1" --product onceledger >&2
        echo "$1/.build/release/onceledger bench"
    fi
}

source_a=$(source_of "$a")
source_b=$(source_of "$b")
echo "compare: A = $a ($source_a)"
echo "compare: B = $b ($source_b)"
bench_a=$(build "$source_a")
bench_b=$(build "$source_b")

for run in $(seq 1 "$runs"); do
    if [ $((run % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for which in $order; do
        if [ "$which" = A ]; then bench="$bench_a"; else bench="$bench_b"; fi
        echo
        echo "=== run $run, build $which: $bench --dir $dir $*"
        # $bench is one path, or a path and the word "bench": split on purpose.
        # shellcheck disable=SC2086
        $bench --dir "$dir" "$@" | tee "$out/$which-$run.txt"
    done
done

# Each target row, then what every run measured for it (PASS or MISS): A's runs, then B's.
echo
echo "=== targets: A = $a, B = $b ($runs runs each; the tables are in $out)"
files=()
for which in A B; do
    for run in $(seq 1 "$runs"); do files+=("$out/$which-$run.txt"); done
done
awk '
    FNR == 1 { label = FILENAME; sub(/.*\//, "", label); sub(/\.txt$/, "", label); on = 0 }
    /^target  / { on = 1; next }
    on && /^-+$/ { next }
    on && NF == 0 { on = 0 }
    on {
        n = split($0, cell, /  +/)
        if (n < 4) next
        if (!(cell[1] in seen)) { seen[cell[1]] = 1; names[++count] = cell[1]; goal[cell[1]] = cell[3] }
        row[cell[1]] = row[cell[1]] sprintf("  %s %s %s", label, cell[2], cell[4])
    }
    END { for (i = 1; i <= count; i++) printf "%s (%s):%s\n", names[i], goal[names[i]], row[names[i]] }
' "${files[@]}"
