#!/usr/bin/env bash
# Reproduce the wattlet NIALM models from nothing.
#
#   run.sh            the real-data models (kettle, dishwasher, washing machine, microwave):
#                     pinned venv -> REFIT houses 2 and 20 (sha256 checked) -> 60 s means ->
#                     training both ways (2->20, 20->2) -> ONNX export + check -> scoring on the
#                     unseen house. Writes models/<appliance>.onnx|json (trained on house 20) and
#                     models/metrics-refit.json.
#   run.sh synthetic  the fridge model (REFIT's subset has no fridge): pinned venvs -> antgen
#                     synthetic households -> training -> export -> evaluation. Writes
#                     models/fridge.onnx|json, models/metrics.json, models/houses-manifest.json.
#   run.sh all        both.
#
# Environment: NIALM_VENV (default /work/venv-nialm), NIALM_REFIT (default
# ../shared/testdata/nialm/refit beside the checkout, else $WATTLET_TESTDATA/nialm/refit),
# NIALM_DATA (synthetic only; default: a fresh temp dir, deleted afterwards unless
# NIALM_KEEP_DATA=1), NIALM_THREADS (default: 1 for the REFIT models, 2 for the synthetic ones,
# the counts the shipped models were made with: TensorFlow's result depends on it), NIALM_JOBS
# (parallel generator processes, default 2), PYTHON (default python3, 3.11 tested).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODELS="$(dirname "$HERE")"
VENV="${NIALM_VENV:-/work/venv-nialm}"
PY="${PYTHON:-python3}"
JOBS="${NIALM_JOBS:-2}"
threads() { # default count: NIALM_THREADS wins
  export NIALM_THREADS="${NIALM_THREADS_SET:-$1}"
  export OMP_NUM_THREADS="$NIALM_THREADS" TF_NUM_INTRAOP_THREADS="$NIALM_THREADS" TF_NUM_INTEROP_THREADS=1
}
NIALM_THREADS_SET="${NIALM_THREADS:-}"
start=$(date +%s)

WHAT="${1:-refit}"
case "$WHAT" in refit|synthetic|all) ;; *) echo "usage: $0 [refit|synthetic|all]" >&2; exit 2;; esac

mkvenv() { # name requirements
  if [ ! -x "$VENV/$1/bin/python" ]; then "$PY" -m venv "$VENV/$1"; fi
  "$VENV/$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
}
echo "== venvs in $VENV"
mkvenv train "$HERE/requirements-train.txt"

if [ "$WHAT" != synthetic ]; then
  REPO="$(dirname "$MODELS")"
  REFIT="${NIALM_REFIT:-${WATTLET_TESTDATA:-$REPO/../shared/testdata}/nialm/refit}"
  echo "== REFIT houses 2 and 20 from $REFIT: training both ways, exporting, scoring"
  t0=$(date +%s)
  threads 1
  rm -f "$MODELS/metrics-refit.json"
  (cd "$HERE" && "$VENV/train/bin/python" train_refit.py "$REFIT" "$MODELS")
  secs=$(( $(date +%s) - t0 ))
  "$VENV/train/bin/python" - "$MODELS/metrics-refit.json" "$secs" <<'PYEOF'
import json, sys
p, secs = sys.argv[1], int(sys.argv[2])
m = json.load(open(p)); m["reproduce_seconds"] = secs
json.dump(m, open(p, "w"), indent=2); open(p, "a").write("\n")
print(f"REFIT models done in {secs} s; metrics in {p}")
PYEOF
fi
if [ "$WHAT" = refit ]; then exit 0; fi

mkvenv gen "$HERE/requirements-gen.txt"

DATA="${NIALM_DATA:-$(mktemp -d /tmp/wattlet-nialm-data.XXXXXX)}"
case "$DATA" in "$MODELS"/*) echo "refusing to write data inside the repository: $DATA" >&2; exit 1;; esac
cleanup() { if [ -z "${NIALM_DATA:-}" ] && [ "${NIALM_KEEP_DATA:-0}" != 1 ]; then rm -rf "$DATA"; fi; }
trap cleanup EXIT

echo "== generating synthetic households into $DATA ($JOBS in parallel)"
mapfile -t HOUSES < <(grep -oE '^\[h[0-9]+\]' "$HERE/antgen/houses.conf" | tr -d '[]')
mkdir -p "$DATA/parts"
printf '%s\n' "${HOUSES[@]}" | xargs -P "$JOBS" -I{} \
  "$VENV/gen/bin/python" "$HERE/generate.py" "$DATA/parts/{}" --houses {}
"$VENV/gen/bin/python" - "$DATA" "${HOUSES[@]}" <<'PYEOF'
import json, os, shutil, sys
out, houses = sys.argv[1], sys.argv[2:]
manifest = {}
for h in houses:
    part = os.path.join(out, "parts", h)
    manifest.update(json.load(open(os.path.join(part, "manifest.json"))))
    shutil.move(os.path.join(part, h + ".npz"), os.path.join(out, h + ".npz"))
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
shutil.rmtree(os.path.join(out, "parts"))
PYEOF
cp "$DATA/manifest.json" "$MODELS/houses-manifest.json"

echo "== training, exporting and evaluating (all five, as the fridge was made; only the fridge is kept)"
OUT="$DATA/models"
mkdir -p "$OUT"
threads 2
"$VENV/train/bin/python" "$HERE/train.py" "$DATA" "$OUT"
cp "$OUT/fridge.onnx" "$OUT/fridge.json" "$MODELS/"
"$VENV/train/bin/python" - "$OUT/metrics.json" "$MODELS/metrics.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["appliances"] = {"fridge": m["appliances"]["fridge"]}
m["note"] = "only the fridge of this synthetic run is shipped; the other four models are REFIT-trained (metrics-refit.json)"
json.dump(m, open(sys.argv[2], "w"), indent=2); open(sys.argv[2], "a").write("\n")
PYEOF

end=$(date +%s)
"$VENV/train/bin/python" - "$MODELS/metrics.json" "$((end - start))" <<'PYEOF'
import json, sys
p, secs = sys.argv[1], int(sys.argv[2])
m = json.load(open(p)); m["reproduce_seconds"] = secs
json.dump(m, open(p, "w"), indent=2); open(p, "a").write("\n")
print(f"synthetic (fridge) done in {secs} s; metrics in {p}")
PYEOF
