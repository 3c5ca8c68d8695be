#!/usr/bin/env bash
# One-shot plan builder: the `build-plans` compose service (profile "build") and the k8s Job.
# Builds TensorRT plans for the GPU this container sees, verifies them, and assembles the served
# model repository. Re-running is cheap: `enrichment-export plan` keeps every plan whose sidecar
# (compute capability, TensorRT version, precision, batch profile, ONNX sha256) still matches
# and rebuilds the others, so a GPU or TensorRT change triggers a rebuild by itself.
#
#   enrichment-build-plans               build what is stale, then assemble the repository
#   enrichment-build-plans --check-only  exit non-zero when a plan is missing or stale; change nothing
#
# Environment: ENRICHMENT_ONNX_DIR (ONNX models, read-only), ENRICHMENT_PLAN_CACHE (plans and
# sidecars), ENRICHMENT_REPOSITORY (assembled repository), ENRICHMENT_GPU_PROFILE (instance and
# batching values), ENRICHMENT_FALLBACK (onnx: serve ONNX on onnxruntime when a plan cannot be
# built; none: fail).
set -euo pipefail

onnx_dir=${ENRICHMENT_ONNX_DIR:-/artifacts/onnx}
plan_cache=${ENRICHMENT_PLAN_CACHE:-/cache/tensorrt}
repository=${ENRICHMENT_REPOSITORY:-/models}
gpu_profile=${ENRICHMENT_GPU_PROFILE:-/opt/enrichment/src/deploy/gpu-profile.json}
fallback=${ENRICHMENT_FALLBACK:-onnx}

log() { printf '[build-plans] %s\n' "$*" >&2; }

case "$fallback" in
  onnx | none) ;;
  *) log "ENRICHMENT_FALLBACK must be 'onnx' or 'none', got '$fallback'"; exit 2 ;;
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
  log "GPU: $(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader)"
fi
# Every path the export CLI touches must lie under an allowed root (validate_model_path).
roots=(--allowed-root "$onnx_dir" --allowed-root "$plan_cache" --allowed-root "$repository")
plan_args=(--repository "$onnx_dir" --cache-dir "$plan_cache" "${roots[@]}")

if [[ "${1:-}" == "--check-only" ]]; then
  exec enrichment-export plan --check-only "${plan_args[@]}"
fi

target=tensorrt
if enrichment-export plan "${plan_args[@]}"; then
  log "plans current in $plan_cache"
elif [[ "$fallback" == "onnx" ]]; then
  log "WARNING: no usable TensorRT plan; the repository falls back to ONNX on onnxruntime"
  target=onnx
else
  log "plan build failed and ENRICHMENT_FALLBACK=none"
  exit 1
fi

enrichment-export build-repository --target "$target" --artifacts "$onnx_dir" --plans "$plan_cache" \
  --gpu-profile "$gpu_profile" --out "$repository" "${roots[@]}"
log "repository ready: $repository (target $target, manifest $repository/repository.json)"
