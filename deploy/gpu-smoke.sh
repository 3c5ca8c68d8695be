#!/usr/bin/env bash
# One-command smoke test of the GPU deployment, run on the GPU host after `docker compose build`:
#   1. build-plans (plans for this GPU, verified against onnxruntime; the repository assembled)
#   2. start Triton and wait for readiness
#   3. pose, threat, reid and enrich through our client (deploy/gpu_smoke_check.py), and both
#      detectors served by tensorrt according to repository.json and the model configs
#   4. print the VRAM the server uses (nvidia-smi) and the per-frame latency of enrich (perf_analyzer)
# Exits non-zero on any failure. The host needs `pip install enrichment-light` (client, perf_analyzer).
#
#   deploy/gpu-smoke.sh            run it
#   deploy/gpu-smoke.sh --dry-run  print every command, run nothing
#
# Environment: ENRICHMENT_ADMIN_KEY (as for compose), ENRICHMENT_GPU_ID (the card, default 1),
# ENRICHMENT_SMOKE_HOST (default 127.0.0.1), ENRICHMENT_SMOKE_TIMEOUT_S (readiness, default 300),
# ENRICHMENT_SMOKE_ENFORCE_TARGETS=1 (also fail above 600 MB VRAM or 8 ms per frame), PYTHON.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
host=${ENRICHMENT_SMOKE_HOST:-127.0.0.1}
timeout_s=${ENRICHMENT_SMOKE_TIMEOUT_S:-300}
gpu_id=${ENRICHMENT_GPU_ID:-1}
enforce=${ENRICHMENT_SMOKE_ENFORCE_TARGETS:-0}
python=${PYTHON:-python3}
vram_target_mib=600
latency_target_ms=8
dry_run=0

log() { printf '[gpu-smoke] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
run() {
  printf '+ %s\n' "$*" >&2
  if [[ $dry_run == 1 ]]; then return 0; fi
  "$@"
}

case "${1:-}" in
  "") ;;
  --dry-run) dry_run=1 ;;
  *) log "usage: deploy/gpu-smoke.sh [--dry-run]"; exit 2 ;;
esac
if [[ -z "${ENRICHMENT_ADMIN_KEY:-}" ]]; then
  log "ENRICHMENT_ADMIN_KEY must be set (as for docker compose; see docs/tensorrt.md)"
  exit 2
fi
for tool in docker curl nvidia-smi perf_analyzer "$python"; do
  command -v "$tool" >/dev/null 2>&1 || [[ $dry_run == 1 ]] || fail "$tool is not on PATH"
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"

log "1/4 build-plans"
run docker compose --profile build run --rm build-plans || fail "build-plans failed"

log "2/4 start Triton and wait for readiness (up to ${timeout_s}s)"
run docker compose up -d triton || fail "docker compose up failed"
if [[ $dry_run == 0 ]]; then
  deadline=$((SECONDS + timeout_s))
  until curl -fsS -o /dev/null "http://${host}:8000/v2/health/ready"; do
    if ((SECONDS >= deadline)); then
      docker compose logs --tail 50 triton >&2 || true
      fail "Triton not ready after ${timeout_s}s"
    fi
    sleep 2
  done
fi
log "Triton ready"

log "3/4 requests through the client, backends"
run docker compose exec -T triton cat /models/repository.json >"$work/repository.json" \
  || fail "could not read /models/repository.json from the triton container"
run "$python" "$here/gpu_smoke_check.py" --url "${host}:8001" --manifest "$work/repository.json" \
  --frame-out "$work/frame.png" || fail "client requests or backend check failed (see above)"

log "4/4 VRAM and per-frame latency"
run nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader --id="$gpu_id" \
  || fail "nvidia-smi failed"
apps=$(run nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits \
  --id="$gpu_id") || fail "nvidia-smi failed"
vram_mib=$(awk -F', *' '$2 ~ /tritonserver/ {sum += $3} END {print sum + 0}' <<<"$apps")
log "VRAM used by tritonserver: ${vram_mib} MiB (target <= ${vram_target_mib} MB on the A400)"
run "$python" "$here/make_perf_input.py" "$work/frame.png" "$work/perf.json" || fail "perf input failed"
perf=$(run perf_analyzer -m enrich -i grpc -u "${host}:8001" --input-data "$work/perf.json" \
  --concurrency-range 1 --measurement-interval 5000 --stability-percentage 20) || fail "perf_analyzer failed"
printf '%s\n' "$perf" >&2
latency_us=$(awk '/Avg latency:/ {print $3; exit}' <<<"$perf")
if [[ $dry_run == 1 ]]; then
  log "dry run: nothing was started"
  exit 0
fi
[[ -n "$latency_us" ]] || fail "perf_analyzer printed no 'Avg latency'"
latency_ms=$(awk -v us="$latency_us" 'BEGIN {printf "%.2f", us / 1000}')
log "per-frame latency (enrich: pose + threat + re-id, concurrency 1): ${latency_ms} ms (target <= ${latency_target_ms} ms)"
if [[ $enforce == 1 ]]; then
  awk -v v="$vram_mib" -v t="$vram_target_mib" 'BEGIN {exit !(v <= t * 1000000 / 1048576)}' \
    || fail "VRAM ${vram_mib} MiB over the ${vram_target_mib} MB target"
  awk -v l="$latency_ms" -v t="$latency_target_ms" 'BEGIN {exit !(l <= t)}' \
    || fail "latency ${latency_ms} ms over the ${latency_target_ms} ms target"
fi
log "passed"
