#!/usr/bin/env bash
# perf_analyzer over every enrichment-light model and ensemble, against a running Triton server.
#
#   benchmarks/perf_analyzer/run.sh [-u HOST:PORT] [-i grpc|http] [-o OUT_DIR] [-c CONCURRENCY_RANGE] [-m MODEL]...
#
# Defaults: -u localhost:8001 -i grpc -o benchmarks/perf_analyzer/last-run -c 1:4:3 (concurrency 1 and 4), all models.
# perf_analyzer ships in the tritonclient[all] wheel (<venv>/bin/perf_analyzer). The wheel's binary needs
# libb64.so.0d and libcudart.so.12 even on CPU; when they are missing this script points the loader at the
# copies inside the nvidia-pytriton wheel (a private folder of symlinks; nothing is installed).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
URL="localhost:8001"; PROTO="grpc"; OUT="$HERE/last-run"; CONC="1:4:3"; ONLY=()
while getopts "u:i:o:c:m:h" opt; do
  case "$opt" in
    u) URL="$OPTARG" ;; i) PROTO="$OPTARG" ;; o) OUT="$OPTARG" ;; c) CONC="$OPTARG" ;; m) ONLY+=("$OPTARG") ;;
    h|*) sed -n '2,9p' "$0"; exit 0 ;;
  esac
done

PY="${PYTHON:-python}"
PA="$(command -v perf_analyzer || true)"
[ -n "$PA" ] || PA="$("$PY" -c 'import os, sys; print(os.path.join(os.path.dirname(sys.executable), "perf_analyzer"))')"
[ -x "$PA" ] || { echo "perf_analyzer not found (pip install 'tritonclient[all]==2.51.0')" >&2; exit 2; }

LIBS="$(mktemp -d)"; DATA="$(mktemp -d)"
trap 'rm -rf "$LIBS" "$DATA"' EXIT
if [ "$(ldd "$PA" 2>/dev/null | grep -c "not found" || true)" != 0 ]; then
  WHEEL_LIBS="$("$PY" -c 'import nvidia_pytriton, os; print(os.path.join(os.path.dirname(os.path.dirname(nvidia_pytriton.__file__)), "nvidia_pytriton.libs"))' 2>/dev/null \
    || "$PY" -c 'import pytriton, os; print(os.path.join(os.path.dirname(os.path.dirname(pytriton.__file__)), "nvidia_pytriton.libs"))')"
  for lib in libb64.so.0d libcudart.so.12; do
    src="$(ls "$WHEEL_LIBS"/"${lib%%.so*}"-*.so* 2>/dev/null | head -1 || true)"
    [ -n "$src" ] && ln -sf "$src" "$LIBS/$lib"
  done
  export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

"$PY" "$HERE/make_inputs.py" "$DATA"
mkdir -p "$OUT"

# model | perf_analyzer arguments (shapes exclude the batch dimension)
MODELS=(
  "preprocess|-b 1 --input-data $DATA/image.json"
  "yolov8n_pose|-b 1 --shape images:640,640,3"
  "yolov8n_threat|-b 1 --shape images:640,640,3"
  "osnet_x0_25|-b 32 --shape crops:256,128,3"
  "pose_postprocess|-b 1 --input-data $DATA/pose_postprocess --shape output0:56,8400 --shape LETTERBOX_INFO:5 --shape CONF_THRESHOLD:1 --shape IOU_THRESHOLD:1"
  "threat_postprocess|-b 1 --input-data $DATA/threat_postprocess --shape output0:84,8400 --shape LETTERBOX_INFO:5 --shape CONF_THRESHOLD:1 --shape IOU_THRESHOLD:1"
  "reid_crops|--input-data $DATA/reid.json"
  "pose|-b 1 --input-data $DATA/image.json"
  "threat|-b 1 --input-data $DATA/image.json"
  "reid|--input-data $DATA/reid.json"
  "enrich|-b 1 --input-data $DATA/image.json"
)

status=0
printf "%-20s %-12s %12s %14s %14s\n" model concurrency "infer/s" "p50 latency us" "p99 latency us" | tee "$OUT/summary.txt"
for entry in "${MODELS[@]}"; do
  model="${entry%%|*}"; args="${entry#*|}"
  if [ "${#ONLY[@]}" -gt 0 ] && [[ ! " ${ONLY[*]} " =~ " $model " ]]; then continue; fi
  # shellcheck disable=SC2086
  if timeout 300 "$PA" -m "$model" -u "$URL" -i "$PROTO" $args --concurrency-range "$CONC" \
      --measurement-interval 3000 --max-trials 3 --stability-percentage 999 --percentile 99 \
      -f "$OUT/$model.csv" > "$OUT/$model.txt" 2>&1; then
    tail -n +2 "$OUT/$model.csv" | while IFS=, read -r conc ips rest; do
      p50="$(head -1 "$OUT/$model.csv" | tr ',' '\n' | grep -n '^p50 latency$' | cut -d: -f1)"
      p99="$(head -1 "$OUT/$model.csv" | tr ',' '\n' | grep -n '^p99 latency$' | cut -d: -f1)"
      line="$(grep "^$conc,$ips," "$OUT/$model.csv")"
      printf "%-20s %-12s %12s %14s %14s\n" "$model" "$conc" "$ips" \
        "$(echo "$line" | cut -d, -f"$p50")" "$(echo "$line" | cut -d, -f"$p99")"
    done | tee -a "$OUT/summary.txt"
  else
    echo "$model: perf_analyzer failed (see $OUT/$model.txt)" | tee -a "$OUT/summary.txt"; status=1
  fi
done
exit "$status"
