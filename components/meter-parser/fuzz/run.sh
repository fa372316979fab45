#!/usr/bin/env bash
# Usage: fuzz/run.sh SECONDS [TARGET...]
#
# Seeds fuzz/corpus/<target> from the real captures in shared/testdata ($WATTLET_TESTDATA) and from
# fuzz/seeds (telegrams of meters beyond the captures), then runs each fuzz target (default: sml
# iec62056_21 dsmr) for SECONDS seconds. Exits non-zero when a target crashes (the input is kept in
# fuzz/artifacts/<target>/) or fails to build.
set -euo pipefail

seconds=${1:?usage: $0 SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sml iec62056_21 dsmr)

here=$(cd "$(dirname "$0")" && pwd)
testdata=${WATTLET_TESTDATA:-$here/../../../../shared/testdata}
[ -f "$testdata/sml/SOURCES.md" ] || {
    echo "test data not found at $testdata (set WATTLET_TESTDATA)" >&2
    exit 2
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs nightly flags; on a stable-only machine RUSTC_BOOTSTRAP unlocks them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
fi
build_opts=()
[ -z "${CARGO_TARGET_DIR:-}" ] || build_opts=(--target-dir "$CARGO_TARGET_DIR/fuzz")

# Every seed gets a leading selector byte (see src/lib.rs): 0x07 = chunks of 8, default options.
seed() { # seed CORPUS_DIR FILE...
    local dir=$1 file out
    shift
    mkdir -p "$dir"
    for file in "$@"; do
        out="$dir/$(basename "$file").seed"
        case "$file" in
        *.hex) { printf '\x07'; perl -0777 -ne 's/\s+//g; print pack("H*", $_)' "$file"; } >"$out" ;;
        *) { printf '\x07'; cat "$file"; } >"$out" ;;
        esac
    done
}

shopt -s nullglob globstar
# The text targets share one scanner, so each also gets the other text format's captures.
seed "$here/corpus/sml" "$testdata"/sml/**/*.bin "$testdata"/sml/**/*.hex
seed "$here/corpus/iec62056_21" "$testdata"/iec62056-21/**/*.txt "$testdata"/dsmr/**/*.txt
seed "$here/corpus/dsmr" "$testdata"/dsmr/**/*.txt "$testdata"/iec62056-21/**/*.txt
# Telegrams of meters and gateways beyond the captures (tests/beyond_captures keeps them current).
seed "$here/corpus/iec62056_21" "$here"/seeds/*.txt
seed "$here/corpus/dsmr" "$here"/seeds/*.txt

cd "$here"
failed=()
for target in "${targets[@]}"; do
    echo "=== $target: ${seconds}s"
    if ! "${fuzz[@]}" run "${build_opts[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed or failed: ${failed[*]} (inputs in $here/artifacts/)" >&2
    exit 1
fi
echo "no crash in: ${targets[*]}"
