#!/usr/bin/env bash
# One-shot plan builder: the `build-plans` compose service (profile "build") and the k8s Job.
# Builds TensorRT plans of the two detectors (the models the tensorrt target serves as plans) for the
# GPU this container sees, verifies them against onnxruntime, and assembles the served model
# repository. Each model gets its own outcome: a detector whose plan is missing, stale, built for
# another GPU or TensorRT, or failed verification is served from ONNX on onnxruntime, and the reason
# is recorded in <repository>/repository.json. Re-running is cheap: `enrichment-export plan` keeps
# every plan whose sidecar (compute capability, TensorRT version, precision, batch profile, ONNX
# sha256) still matches and rebuilds the others.
#
#   enrichment-build-plans               build what is stale, then assemble the repository
#   enrichment-build-plans --check-only  exit non-zero when a plan is missing or stale; change nothing
#
# Environment: ENRICHMENT_ONNX_DIR (ONNX models, read-only; <model>.onnx or <model>/1/model.onnx),
# ENRICHMENT_PLAN_CACHE (plans and sidecars), ENRICHMENT_REPOSITORY (assembled repository),
# ENRICHMENT_GPU_PROFILE (instance and batching values), ENRICHMENT_SOURCE_REPOSITORY (model.py
# sources), ENRICHMENT_FALLBACK (onnx: a detector without a usable plan is served on onnxruntime;
# none: fail), ENRICHMENT_OSNET_TENSORRT (1: OSNet on onnxruntime with the TensorRT accelerator).
set -euo pipefail

onnx_dir=${ENRICHMENT_ONNX_DIR:-/artifacts/onnx}
plan_cache=${ENRICHMENT_PLAN_CACHE:-/cache/tensorrt}
repository=${ENRICHMENT_REPOSITORY:-/models}
gpu_profile=${ENRICHMENT_GPU_PROFILE:-/opt/enrichment/gpu-profile.json}
source_repository=${ENRICHMENT_SOURCE_REPOSITORY:-}
fallback=${ENRICHMENT_FALLBACK:-onnx}
osnet_tensorrt=${ENRICHMENT_OSNET_TENSORRT:-0}
plan_models=(--model yolov8n_pose --model yolov8n_threat)

log() { printf '[build-plans] %s\n' "$*" >&2; }

case "$fallback" in
  onnx | none) ;;
  *) log "ENRICHMENT_FALLBACK must be 'onnx' or 'none', got '$fallback'"; exit 2 ;;
esac
case "$osnet_tensorrt" in
  0 | 1) ;;
  *) log "ENRICHMENT_OSNET_TENSORRT must be 0 or 1, got '$osnet_tensorrt'"; exit 2 ;;
esac
if [[ $# -gt 1 || ( $# -eq 1 && "$1" != "--check-only" ) ]]; then
  log "usage: enrichment-build-plans [--check-only]"
  exit 2
fi
if [[ ! -d "$onnx_dir" ]] || [[ -z "$(ls -A "$onnx_dir")" ]]; then
  log "no ONNX models in $onnx_dir: export them first (enrichment-export onnx; docs/tensorrt.md)"
  exit 2
fi

if command -v nvidia-smi >/dev/null 2>&1; then
  log "GPU: $(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader || true)"
fi
# Every path the export CLI touches must lie under an allowed root (validate_model_path).
roots=(--allowed-root "$onnx_dir" --allowed-root "$plan_cache" --allowed-root "$repository")
plan_args=(--repository "$onnx_dir" --cache-dir "$plan_cache" "${plan_models[@]}" "${roots[@]}")

if [[ "${1:-}" == "--check-only" ]]; then
  exec enrichment-export plan --check-only "${plan_args[@]}"
fi

if enrichment-export plan "${plan_args[@]}"; then
  log "plans current in $plan_cache"
elif [[ "$fallback" == "onnx" ]]; then
  log "WARNING: not every plan could be built (see above); those detectors fall back to ONNX on onnxruntime"
else
  log "plan build failed and ENRICHMENT_FALLBACK=none"
  exit 1
fi

repo_args=(--target tensorrt --fallback "$fallback" --artifacts "$onnx_dir" --plans "$plan_cache"
  --gpu-profile "$gpu_profile" --out "$repository")
if [[ -n "$source_repository" ]]; then
  repo_args+=(--source-repository "$source_repository")
fi
if [[ "$osnet_tensorrt" == 1 ]]; then
  repo_args+=(--osnet-tensorrt-accelerator)
fi
enrichment-export build-repository "${repo_args[@]}" "${roots[@]}"
log "repository ready: $repository (manifest $repository/repository.json; per-model backend and fallback reasons)"
