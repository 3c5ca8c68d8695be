#!/usr/bin/env bash
# What ships is what runs: build the wheel from a clean copy of the tree, install it (not editable)
# into a fresh virtual environment outside the checkout, and run the main job from another folder:
#   enrichment-light serve --untrained --analyze --out DIR   (exports, builds the repository, serves, analyses)
#   enrichment-export build-repository --target onnx ...      (the builder alone, from package data)
# Usage: bash scripts/check-wheel.sh   (PYTHON=python3.11: interpreter; KEEP=1: keep the folder;
#        LOCK=/tmp/x.lock: run the server step under flock on a shared machine)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/enrichment-wheel.XXXXXX")
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$work"' EXIT; fi
start=$SECONDS
step() { echo "[check-wheel $((SECONDS - start))s] $*"; }

step "copying the tracked and new files of $src (no build leftovers, no .venv)"
mkdir -p "$work/src"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T - 2>/dev/null) | tar -xf - -C "$work/src"

step "building the wheel"
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install "setuptools>=77" wheel
"${pip[@]}" wheel --no-deps --no-build-isolation -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/enrichment_light-*.whl)
step "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

step "installing torch==2.13.0 (CPU) and then the wheel with [export,serve] into a fresh venv"
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install -c "$src/constraints.txt" "${wheel}[export,serve]"

mkdir -p "$work/run" "$work/yolo"
cd "$work/run"  # not the checkout: nothing may be read from the source tree
export ENRICHMENT_LIGHT_CACHE_DIR="$work/cache" YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR="$work/yolo"
"$work/venv/bin/python" - "$work/venv" "$src" <<'PY'
import sys
from pathlib import Path

import enrichment_export
import enrichment_light
from enrichment_light.core import package_data

venv, src = (Path(p).resolve() for p in sys.argv[1:3])
for module in (enrichment_light, enrichment_export):
    where = Path(module.__file__).resolve()
    assert venv in where.parents and src not in where.parents, f"{module.__name__} imported from {where}"
    print(f"{module.__name__} from {where.parent}")
shipped = sorted(p.name for p in package_data.root().joinpath("models").iterdir())
assert not any(Path(str(package_data.root().joinpath("models", n))).is_symlink() for n in shipped), "links shipped"
assert len(package_data.sample_images()) == 2, package_data.sample_images()
print("package data:", shipped, "+ gpu-profile.json, threat_taxonomy.json,", len(package_data.sample_images()), "samples")
PY

step "enrichment-light serve --untrained --analyze --out $work/run/analysis"
${LOCK:+flock "$LOCK"} "$work/venv/bin/enrichment-light" serve --untrained --analyze --out "$work/run/analysis" \
  --http-port 0 --grpc-port 0 --metrics-port 0
test "$(ls "$work"/run/analysis/*_annotated.jpg | wc -l)" -eq 2
"$work/venv/bin/python" -c "import json, sys; r = json.load(open(sys.argv[1])); assert len(r) == 2 and all('result' in x for x in r), r" \
  "$work/run/analysis/results.json"

step "enrichment-export build-repository --target onnx (from the ONNX files serve exported)"
artifacts=$(ls -d "$work"/cache/repository-cpu-untrained-artifacts)
"$work/venv/bin/enrichment-export" build-repository --target onnx --out "$work/run/onnx-repository" \
  --artifacts "$artifacts" --allowed-root "$work"
test -f "$work/run/onnx-repository/repository.json"

step "the repository served from the wheel carries the checkout's model.py files"
for model_py in "$src"/model_repository/*/1/model.py; do
  name=$(basename "$(dirname "$(dirname "$model_py")")")
  cmp "$model_py" "$work/cache/repository-cpu-untrained/$name/1/model.py"
done
step "OK: the installed wheel serves"
