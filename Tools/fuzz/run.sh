#!/usr/bin/env bash
# Builds the libFuzzer targets for the format decoders and runs each for a bounded time.
#
#   Tools/fuzz/run.sh [TARGET...]      (default: all three targets)
#
# Targets (Tools/fuzz/<Target>.swift, each with its own LLVMFuzzerTestOneInput):
#   FuzzRecord         the one segment walker and resynchronisation rule (SegmentReader,
#                      over RecordFrame.decode) and the one body decoder,
#                      RecordBody.decodeFields (in place, as the ledger's replay reads
#                      bodies) and RecordBody.decode (built on it)
#   FuzzSegmentHeader  SegmentHeader.decode
#   FuzzSnapshot       SnapshotFile.decode and RecordBody.decode of its items; for
#                      version 3 and 4, SnapshotFile.decodeHints (the open path, with
#                      version 4's journal-positions hints grouped and expanded) and
#                      SnapshotFile.decodeValue (a receipt read); and salvage's reader of a
#                      damaged snapshot, DamagedSnapshot.parse
#
# Each target is compiled with `swiftc -sanitize=fuzzer,address` together with the
# OnceLedgerFormat sources (one module, so the target calls the decoders directly; the
# CRC-32 C target through its module map in Sources/CCRC32/include, compiled with the
# toolchain's clang under the same sanitizers). The seed corpus comes from Spec/vectors/. Everything is
# written under fuzz-out/ (git-ignored): binaries, corpora, crash inputs, logs.
#
# Environment:
#   ONCELEDGER_FUZZ_SECONDS  seconds per target (default 60)
#
# Exit status: 0 when every target ran its time without a crash; 1 when a target found a
# crash (the input is saved as fuzz-out/<Target>/crash-* and the log printed); 2 when a
# target does not build.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${ONCELEDGER_FUZZ_SECONDS:-60}"
out="fuzz-out"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzRecord FuzzSegmentHeader FuzzSnapshot)

mkdir -p "$out"
# A Swift runtime failure must reach libFuzzer's crash handler at once; the Swift
# backtracer would otherwise symbolicate for up to 30 s per crash.
export SWIFT_BACKTRACE=enable=no
format_sources=(Sources/OnceLedgerFormat/*.swift)

# Seed corpora from the golden vectors.
seed() {
    local target="$1" dir="$out/$1/seeds"
    rm -rf "$dir"
    mkdir -p "$dir"
    case "$target" in
    FuzzRecord)
        cp Spec/vectors/record-*.bin "$dir/"
        # Whole segments too (from offset 0, records misplaced) and record pairs.
        for seg in Spec/vectors/ledger-*/wal-*.seg; do
            cp "$seg" "$dir/$(basename "$(dirname "$seg")")-$(basename "$seg")"
        done
        cat Spec/vectors/record-01-intent.bin Spec/vectors/record-02-completion.bin >"$dir/pair.bin"
        ;;
    FuzzSegmentHeader)
        cp Spec/vectors/segment-header.bin "$dir/"
        for seg in Spec/vectors/ledger-*/wal-*.seg; do
            head -c 64 "$seg" >"$dir/$(basename "$(dirname "$seg")")-$(basename "$seg" .seg).hdr"
        done
        ;;
    FuzzSnapshot)
        cp Spec/vectors/ledger-*/snap-*.snap Spec/vectors/snapshot-v3*.snap Spec/vectors/snapshot-v4*.snap "$dir/"
        ;;
    esac
}

status=0
for target in "${targets[@]}"; do
    src="Tools/fuzz/$target.swift"
    [ -f "$src" ] || { echo "fuzz: no such target $target ($src)" >&2; exit 2; }
    dir="$out/$target"
    mkdir -p "$dir/corpus"
    echo "fuzz: building $target"
    if ! clang -c -O2 -g -fsanitize=fuzzer-no-link,address -I Sources/CCRC32/include \
        Sources/CCRC32/ccrc32.c -o "$dir/ccrc32.o" 2>"$dir/build.log" ||
        ! swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name "$target" \
        -I Sources/CCRC32/include "$dir/ccrc32.o" \
        "${format_sources[@]}" Tools/fuzz/FuzzSupport.swift "$src" \
        -o "$dir/$target" 2>>"$dir/build.log"; then
        cat "$dir/build.log" >&2
        echo "fuzz: $target does not build" >&2
        exit 2
    fi
    seed "$target"
    echo "fuzz: running $target for ${seconds}s (seeds: $(ls "$dir/seeds" | wc -l) files from Spec/vectors)"
    # New inputs go to corpus/ (kept between runs); seeds/ is read only.
    set +e
    "$dir/$target" "$dir/corpus" "$dir/seeds" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 \
        -artifact_prefix="$dir/" >"$dir/fuzz.log" 2>&1
    rc=$?
    set -e
    stats=$(grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$dir/fuzz.log" | tr '\n' ' ' || true)
    crashes=$(ls "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-* 2>/dev/null || true)
    if [ $rc -ne 0 ] || [ -n "$crashes" ]; then
        echo "fuzz: $target FAILED (exit $rc) $stats" >&2
        tail -n 60 "$dir/fuzz.log" >&2
        [ -z "$crashes" ] || echo "fuzz: saved inputs: $crashes" >&2
        status=1
    else
        echo "fuzz: $target ok: $stats"
    fi
done
exit $status
