#!/usr/bin/env bash
# Reproduce the wattlet NIALM models from nothing:
#   venvs (pinned) -> antgen synthetic households -> training -> ONNX export + check -> evaluation.
# Writes models/<appliance>.onnx, models/<appliance>.json and models/metrics.json.
# Environment: NIALM_VENV (default /work/venv-nialm), NIALM_DATA (default: a fresh temp dir,
# deleted afterwards unless NIALM_KEEP_DATA=1), NIALM_THREADS (default 2), NIALM_JOBS (parallel
# generator processes, default 2), PYTHON (default python3, 3.11 tested).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODELS="$(dirname "$HERE")"
VENV="${NIALM_VENV:-/work/venv-nialm}"
PY="${PYTHON:-python3}"
JOBS="${NIALM_JOBS:-2}"
export NIALM_THREADS="${NIALM_THREADS:-2}"
export OMP_NUM_THREADS="$NIALM_THREADS" TF_NUM_INTRAOP_THREADS="$NIALM_THREADS" TF_NUM_INTEROP_THREADS=1
start=$(date +%s)

mkvenv() { # name requirements
  if [ ! -x "$VENV/$1/bin/python" ]; then "$PY" -m venv "$VENV/$1"; fi
  "$VENV/$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
}
echo "== venvs in $VENV"
mkvenv gen "$HERE/requirements-gen.txt"
mkvenv train "$HERE/requirements-train.txt"

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

echo "== training, exporting and evaluating"
rm -f "$MODELS/metrics.json"
"$VENV/train/bin/python" "$HERE/train.py" "$DATA" "$MODELS"

end=$(date +%s)
"$VENV/train/bin/python" - "$MODELS/metrics.json" "$((end - start))" <<'PYEOF'
import json, sys
p, secs = sys.argv[1], int(sys.argv[2])
m = json.load(open(p)); m["reproduce_seconds"] = secs
json.dump(m, open(p, "w"), indent=2); open(p, "a").write("\n")
print(f"done in {secs} s; metrics in {p}")
PYEOF
