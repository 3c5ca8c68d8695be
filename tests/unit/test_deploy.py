"""Deployment files checked without Docker, kubectl or a GPU.

- docker-compose.yml: interpolated like Compose does, validated against the compose-spec JSON
  schema (shipped by check-jsonschema), then its GPU, security and release settings.
- deploy/Dockerfile and deploy/build-plans.sh: one release for both images; the build script's
  control flow run against a recording stand-in for the export CLI.
- deploy/k8s (kustomize, rendered here) and deploy/kserve: validated against the Kubernetes
  schemas that kubernetes-validate bundles, then probes, GPU limit, security, autoscaling rule.
- Consistency: ports, model names, server flags and the NGC release agree with
  enrichment_light.core.contract, deploy/versions.env and pyproject.toml everywhere.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shlex
import stat
import struct
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import numpy as np
import pytest
import yaml

from enrichment_export import cli as export_cli
from enrichment_light.core import contract

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S = DEPLOY / "k8s"
KSERVE = DEPLOY / "kserve"
ADMIN_KEY = "test-admin-key-0123456789abcdef"
BASE_ENV = {"ENRICHMENT_ADMIN_KEY": ADMIN_KEY}
RESTRICTED = {"model-repository", "shared-memory"}  # must be behind the admin key
CONTRACT_PORTS = {contract.HTTP_PORT, contract.GRPC_PORT, contract.METRICS_PORT}


# --- helpers ------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    pairs = {}
    for raw in (DEPLOY / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


RELEASE = _versions()["TRITON_RELEASE"]

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-style interpolation of every string in a loaded document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        escaped, name, operator, argument, bare = match.groups()
        if escaped:
            return "$"
        name = name or bare
        current = env.get(name)
        unset = current is None or (operator in (":-", ":?") and current == "")
        if operator in (":-", "-") and unset:
            return argument
        if operator in (":?", "?") and unset:
            raise InterpolationError(f"required variable {name} is missing a value: {argument}")
        return current or ""

    return _VAR.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(raw, BASE_ENV if env is None else env)


def flag_values(args: list[str], flag: str) -> list[str]:
    prefix = f"{flag}="
    return [a[len(prefix) :] for a in args if a.startswith(prefix)]


def restricted_groups(args: list[str], flag: str) -> list[tuple[set[str], str, str]]:
    """Parse ``<apis>:<header>=<value>`` groups of a restricted-API flag."""
    groups = []
    for value in flag_values(args, flag):
        apis, sep, kv = value.partition(":")
        header, eq, secret = kv.partition("=")
        assert sep and eq and header and secret, f"{flag}={value!r} is not <apis>:<key>=<value>"
        groups.append((set(apis.split(",")), header, secret))
    return groups


def server_tuning(args: list[str]) -> dict[str, list[str]]:
    """The Triton flags that must be identical wherever the server runs (key and repo excluded)."""
    tuned: dict[str, list[str]] = {}
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, _, value = arg.partition("=")
        if name in {"--model-repository", "--exit-timeout-secs", "--log-verbose"}:
            continue
        if "restricted" in name:
            value = value.partition(":")[0]  # the API list; the key differs by design
        tuned.setdefault(name, []).append(value)
    return tuned


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add / replace / remove: the operations the overlays use."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer(op["path"])
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        elif op["op"] == "add" and isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), op["value"])
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert (int(last) < len(target)) if isinstance(target, list) else last in target, op
            target[int(last) if isinstance(target, list) else last] = op["value"]
        else:
            raise AssertionError(f"unsupported patch op {op}")
    return doc


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Render the subset of kustomize the manifests use: resources, labels, images, patches."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["kind"] == "Kustomization"
    unknown = set(kust) - {"apiVersion", "kind", "resources", "labels", "images", "patches"}
    assert not unknown, f"renderer does not implement {unknown}"
    docs: list[dict[str, Any]] = []
    for entry in kust.get("resources", []):
        path = (directory / entry).resolve()
        assert path.exists(), f"{directory}/kustomization.yaml: resource {entry} does not exist"
        docs.extend(kustomize(path) if path.is_dir() else load_docs(path))
    for label in kust.get("labels", []):
        assert label.get("includeSelectors") is False
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in kust.get("images", []):
        for doc in docs:
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if container["image"] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for patch in kust.get("patches", []):
        body = (
            yaml.safe_load(patch["patch"])
            if "patch" in patch
            else yaml.safe_load((directory / patch["path"]).read_text())
        )
        if isinstance(body, dict) and body.get("$patch") == "delete":
            before = len(docs)
            docs = [d for d in docs if (d["kind"], d["metadata"]["name"]) != (body["kind"], body["metadata"]["name"])]
            assert len(docs) == before - 1, f"delete patch matched nothing: {body}"
            continue
        target = patch["target"]
        matches = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        assert len(matches) == 1, f"patch target {target} matched {len(matches)} resources"
        docs[docs.index(matches[0])] = json_patch(matches[0], body)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def k8s_validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def k8s_base() -> list[dict[str, Any]]:
    return kustomize(K8S)


@pytest.fixture(scope="module")
def k8s_s3() -> list[dict[str, Any]]:
    return kustomize(K8S / "overlays" / "s3")


# --- versions -----------------------------------------------------------------------------------


def test_versions_server_version_matches_client_pins_when_read_from_versions_env():
    versions = _versions()
    assert re.fullmatch(r"\d\d\.\d\d", versions["TRITON_RELEASE"])
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"tritonclient[all]=={versions["TRITON_SERVER_VERSION"]}"' in pyproject
    assert f"tritonclient=={versions['TRITON_SERVER_VERSION']}" in (ROOT / "constraints.txt").read_text()


def test_compose_release_default_is_single_and_matches_versions_env_when_read_raw():
    defaults = set(re.findall(r"\$\{TRITON_RELEASE:-([^}]*)\}", COMPOSE_FILE.read_text()))
    assert defaults == {RELEASE}


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_validates_against_compose_spec_when_interpolated(compose):
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    jsonschema.validate(compose, schema)


def test_compose_interpolation_fails_fast_when_admin_key_unset():
    with pytest.raises(InterpolationError, match="ENRICHMENT_ADMIN_KEY"):
        load_compose(env={})
    with pytest.raises(InterpolationError, match="ENRICHMENT_ADMIN_KEY"):
        load_compose(env={"ENRICHMENT_ADMIN_KEY": ""})


def test_compose_services_build_same_release_when_triton_release_overridden():
    doc = load_compose({**BASE_ENV, "TRITON_RELEASE": "25.01"})
    triton, builder = doc["services"]["triton"], doc["services"]["build-plans"]
    assert triton["build"]["args"]["TRITON_RELEASE"] == builder["build"]["args"]["TRITON_RELEASE"] == "25.01"
    assert triton["image"].endswith(":25.01") and builder["image"].endswith(":25.01")
    assert (triton["build"]["target"], builder["build"]["target"]) == ("triton", "plan-builder")
    assert triton["build"]["dockerfile"] == builder["build"]["dockerfile"] == "deploy/Dockerfile"


@pytest.mark.parametrize("service", ["triton", "build-plans"])
@pytest.mark.parametrize(("env", "expected"), [({}, "1"), ({"ENRICHMENT_GPU_ID": "0"}, "0")])
def test_compose_reserves_gpu_by_id_when_enrichment_gpu_id_set_or_not(service, env, expected):
    doc = load_compose({**BASE_ENV, **env})
    devices = doc["services"][service]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": [expected], "capabilities": ["gpu"]}]


def test_compose_triton_healthcheck_probes_ready_endpoint(compose):
    check = compose["services"]["triton"]["healthcheck"]
    assert check["test"][0] == "CMD" and "curl" in check["test"]
    assert f"http://localhost:{contract.HTTP_PORT}/v2/health/ready" in check["test"]
    assert check["start_period"] and check["retries"] >= 3


def test_compose_triton_serves_model_repository_read_only(compose):
    triton = compose["services"]["triton"]
    repository = flag_values(triton["command"], "--model-repository")
    assert repository == ["/models"]
    mounts = {m["target"]: m for m in triton["volumes"]}
    assert mounts["/models"]["read_only"] is True and mounts["/models"]["type"] == "volume"
    builder_mounts = {m["target"]: m for m in compose["services"]["build-plans"]["volumes"]}
    assert builder_mounts["/models"]["source"] == mounts["/models"]["source"]
    assert builder_mounts["/cache"]["source"] in compose["volumes"]  # plans + sidecars, builder only
    assert builder_mounts["/artifacts/onnx"]["read_only"] is True


def test_compose_triton_gets_writable_onnxruntime_engine_cache_when_started(compose):
    from enrichment_export.repository import ORT_TRT_CACHE_DIR

    mounts = {m["target"]: m for m in compose["services"]["triton"]["volumes"]}
    cache = mounts[ORT_TRT_CACHE_DIR]
    assert cache["type"] == "volume" and not cache.get("read_only") and cache["source"] in compose["volumes"]
    assert cache["source"] != mounts["/models"]["source"]
    # the image pre-creates it for uid 1000, so a fresh named volume inherits the owner
    triton_stage = _stage("triton")
    assert ORT_TRT_CACHE_DIR in triton_stage and "chown -R 1000:1000 /models /cache" in triton_stage


@pytest.mark.parametrize(("env", "ipc"), [({}, "private"), ({"ENRICHMENT_IPC": "host"}, "host")])
def test_compose_triton_ipc_namespace_is_configurable_for_shared_memory(env, ipc):
    triton = load_compose({**BASE_ENV, **env})["services"]["triton"]
    assert triton["ipc"] == ipc
    assert triton["shm_size"]  # the private namespace keeps its sized /dev/shm


@pytest.mark.parametrize(("env", "host_ip"), [({}, "127.0.0.1"), ({"ENRICHMENT_BIND_ADDRESS": "0.0.0.0"}, "0.0.0.0")])
def test_compose_ports_bind_to_configured_address_when_bind_address_set_or_not(env, host_ip):
    doc = load_compose({**BASE_ENV, **env})
    for service in ("triton", "prometheus"):
        for port in doc["services"][service]["ports"]:
            assert port.startswith(f"{host_ip}:"), f"{service} publishes {port} beyond {host_ip}"
    published = {int(p.rsplit(":", 1)[1]) for p in doc["services"]["triton"]["ports"]}
    assert published == CONTRACT_PORTS


def test_compose_triton_ports_flags_match_contract(compose):
    command = compose["services"]["triton"]["command"]
    assert command[0] == "tritonserver"
    assert flag_values(command, "--http-port") == [str(contract.HTTP_PORT)]
    assert flag_values(command, "--grpc-port") == [str(contract.GRPC_PORT)]
    assert flag_values(command, "--metrics-port") == [str(contract.METRICS_PORT)]


@pytest.mark.parametrize("flag", ["--http-restricted-api", "--grpc-restricted-protocol"])
def test_compose_restricts_repository_and_shared_memory_apis_when_key_from_env(compose, flag):
    groups = restricted_groups(compose["services"]["triton"]["command"], flag)
    assert len(groups) == 1
    apis, header, secret = groups[0]
    assert apis >= RESTRICTED
    assert not apis & {"health", "inference", "metadata"}, "clients must reach these without the key"
    assert header == "admin-key" and secret == ADMIN_KEY


def test_compose_model_control_is_explicit_with_all_models_loaded(compose):
    command = compose["services"]["triton"]["command"]
    assert flag_values(command, "--model-control-mode") == ["explicit"]
    assert flag_values(command, "--load-model") == ["*"]


def test_compose_memory_pools_sized_for_4gb_card_when_defaults_used(compose):
    command = compose["services"]["triton"]["command"]
    (cuda_pool,) = flag_values(command, "--cuda-memory-pool-byte-size")
    gpu, _, size = cuda_pool.partition(":")
    assert gpu == "0", "the reserved card is device 0 inside the container"
    assert 64 * 2**20 <= int(size) <= 256 * 2**20
    (pinned,) = flag_values(command, "--pinned-memory-pool-byte-size")
    assert 0 < int(pinned) <= 256 * 2**20


def test_compose_shm_size_covers_python_backend_regions(compose):
    triton = compose["services"]["triton"]
    backend = dict(v.split(",", 1)[1].split("=") for v in flag_values(triton["command"], "--backend-config"))
    python_instances = sum(
        p["instances"]
        for name, p in json.loads((DEPLOY / "gpu-profile.json").read_text()).items()
        if contract.MODELS[name].kind == "python"
    )
    shm_bytes = {"gb": 2**30, "mb": 2**20}[triton["shm_size"][-2:].lower()] * int(triton["shm_size"][:-2])
    # each instance starts with its default region and must be able to grow at least four steps
    needed = python_instances * (int(backend["shm-default-byte-size"]) + 4 * int(backend["shm-growth-byte-size"]))
    assert shm_bytes >= needed


@pytest.mark.parametrize("service", ["triton", "build-plans"])
def test_compose_runs_non_root_when_started(compose, service):
    assert compose["services"][service]["user"] == "1000:1000"


def test_compose_restart_policies_when_long_running_or_one_shot(compose):
    assert compose["services"]["triton"]["restart"] == "unless-stopped"
    assert compose["services"]["build-plans"]["restart"] == "no"


def test_compose_optional_services_sit_in_profiles(compose):
    assert "profiles" not in compose["services"]["triton"]
    assert compose["services"]["build-plans"]["profiles"] == ["build"]
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]
    assert ":" in compose["services"]["prometheus"]["image"] and not compose["services"]["prometheus"][
        "image"
    ].endswith(":latest")


# --- Dockerfile ---------------------------------------------------------------------------------


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_stages_share_one_release_arg():
    froms = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", _dockerfile(), re.MULTILINE)
    assert froms == [
        ("nvcr.io/nvidia/tensorrt:${TRITON_RELEASE}-py3", "wheel"),
        ("nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3", "triton"),
        ("nvcr.io/nvidia/tensorrt:${TRITON_RELEASE}-py3", "plan-builder"),
    ]
    assert re.search(r"^ARG TRITON_RELEASE$", _dockerfile(), re.MULTILINE), "release must come from compose"


def test_dockerfile_stages_run_as_uid_1000():
    assert re.findall(r"^USER\s+(\S+)", _dockerfile(), re.MULTILINE) == ["1000:1000", "1000:1000"]


def test_dockerfile_copy_sources_exist_and_are_not_dockerignored():
    ignore = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if line.strip()]
    assert next(line for line in ignore if not line.startswith("#")) == "*", "the context must be an allow-list"
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for line in re.findall(r"^COPY\s+(.+)$", _dockerfile(), re.MULTILINE):
        if "--from=" in line:  # from another stage, not from the context
            continue
        *sources, _dest = [p for p in shlex.split(line) if not p.startswith("--")]
        for source in sources:
            assert source.rstrip("/") in included, f"COPY {source} is excluded by Dockerfile.dockerignore"
            if source != "model_repository":  # filled by the repository builder's own files
                assert (ROOT / source).exists(), f"COPY source {source} missing"


# --- deploy/build-plans.sh ----------------------------------------------------------------------

_STUB = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$STUB_LOG"
if [[ "$1" == plan ]]; then exit "${STUB_PLAN_RC:-0}"; fi
exit 0
"""


def _run_build_plans(
    tmp_path: Path, *args: str, plan_rc: int = 0, fallback: str | None = None, onnx: bool = True, extra_env=False
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "enrichment-export"
    stub.write_text(_STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir(exist_ok=True)
    if onnx:
        (onnx_dir / "yolov8n_pose.onnx").write_bytes(b"onnx")
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "STUB_LOG": str(log),
        "STUB_PLAN_RC": str(plan_rc),
        "ENRICHMENT_ONNX_DIR": str(onnx_dir),
        "ENRICHMENT_PLAN_CACHE": str(tmp_path / "cache"),
        "ENRICHMENT_REPOSITORY": str(tmp_path / "models"),
        "ENRICHMENT_GPU_PROFILE": str(DEPLOY / "gpu-profile.json"),
    }
    if fallback is not None:
        env["ENRICHMENT_FALLBACK"] = fallback
    if extra_env:
        env.update(
            {k: v for k, v in os.environ.items() if k in ("ENRICHMENT_OSNET_TENSORRT", "ENRICHMENT_SOURCE_REPOSITORY")}
        )
    proc = subprocess.run(
        ["bash", str(DEPLOY / "build-plans.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    for call in calls:  # the stub records; the real export CLI parser must accept every call
        export_cli.build_parser().parse_args(shlex.split(call))
    return proc, calls


def test_build_plans_script_builds_plans_then_tensorrt_repository_when_plans_build(tmp_path):
    proc, calls = _run_build_plans(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 2
    assert calls[0].startswith("plan ") and "--check-only" not in calls[0]
    assert f"--cache-dir {tmp_path / 'cache'}" in calls[0] and f"--repository {tmp_path / 'onnx'}" in calls[0]
    assert calls[1].startswith("build-repository --target tensorrt ")
    assert f"--out {tmp_path / 'models'}" in calls[1] and f"--gpu-profile {DEPLOY / 'gpu-profile.json'}" in calls[1]
    for call in calls:
        for root in ("onnx", "cache", "models"):
            assert f"--allowed-root {tmp_path / root}" in call


def test_build_plans_script_falls_back_per_model_when_plan_build_fails(tmp_path):
    proc, calls = _run_build_plans(tmp_path, plan_rc=1)
    assert proc.returncode == 0, proc.stderr
    # still the tensorrt target: the repository builder serves each detector from its plan or, when
    # that plan is unusable, from ONNX on onnxruntime, with the reason in repository.json
    assert calls[1].startswith("build-repository --target tensorrt --fallback onnx ")
    assert "fall back to ONNX" in proc.stderr


def test_build_plans_script_builds_only_the_detector_plans(tmp_path):
    proc, calls = _run_build_plans(tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan_call = shlex.split(calls[0])
    models = [plan_call[i + 1] for i, a in enumerate(plan_call) if a == "--model"]
    from enrichment_export.repository import PLAN_MODELS

    assert models == list(PLAN_MODELS) and contract.REID_MODEL not in calls[0]
    assert "--osnet-tensorrt-accelerator" not in calls[1] and "--source-repository" not in calls[1]


def test_build_plans_script_passes_osnet_accelerator_and_sources_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv("ENRICHMENT_OSNET_TENSORRT", "1")
    monkeypatch.setenv("ENRICHMENT_SOURCE_REPOSITORY", "/opt/enrichment/model_repository")
    proc, calls = _run_build_plans(tmp_path, extra_env=True)
    assert proc.returncode == 0, proc.stderr
    assert "--osnet-tensorrt-accelerator" in calls[1]
    assert "--source-repository /opt/enrichment/model_repository" in calls[1]


def test_build_plans_script_fails_when_plan_build_fails_and_fallback_none(tmp_path):
    proc, calls = _run_build_plans(tmp_path, plan_rc=1, fallback="none")
    assert proc.returncode == 1
    assert [c.split()[0] for c in calls] == ["plan"]


@pytest.mark.parametrize("plan_rc", [0, 3])
def test_build_plans_script_only_checks_when_check_only(tmp_path, plan_rc):
    proc, calls = _run_build_plans(tmp_path, "--check-only", plan_rc=plan_rc)
    assert proc.returncode == plan_rc
    assert len(calls) == 1 and calls[0].startswith("plan --check-only ")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {"onnx": False}, "no ONNX models"),
        (("--force",), {}, "usage"),
        ((), {"fallback": "maybe"}, "ENRICHMENT_FALLBACK"),
    ],
)
def test_build_plans_script_exits_2_when_misused(tmp_path, args, kwargs, message):
    proc, calls = _run_build_plans(tmp_path, *args, **kwargs)
    assert proc.returncode == 2 and message in proc.stderr
    assert calls == []


def test_build_plans_script_is_compose_and_image_entrypoint(compose):
    assert "/usr/local/bin/enrichment-build-plans" in _dockerfile()
    assert "deploy/build-plans.sh /usr/local/bin/enrichment-build-plans" in _dockerfile()
    assert "entrypoint" not in compose["services"]["build-plans"]


# --- deploy/gpu-profile.json --------------------------------------------------------------------


def _gpu_profile() -> dict[str, Any]:
    return json.loads((DEPLOY / "gpu-profile.json").read_text())


def test_gpu_profile_validates_against_its_schema():
    schema = json.loads((DEPLOY / "schemas" / "gpu-profile.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(_gpu_profile(), schema, cls=jsonschema.Draft202012Validator)


def test_gpu_profile_covers_every_non_ensemble_model_of_the_contract():
    expected = set(contract.INFERENCE_MODELS) | set(contract.PYTHON_MODELS)
    assert set(_gpu_profile()) == expected


@pytest.mark.parametrize("name", sorted(set(contract.INFERENCE_MODELS) | set(contract.PYTHON_MODELS)))
def test_gpu_profile_batch_sizes_fit_contract_when_model_batches(name):
    profile, spec = _gpu_profile()[name], contract.MODELS[name]
    sizes = profile["preferred_batch_sizes"] + profile["warmup_batch_sizes"]
    if spec.max_batch_size == 0:
        assert sizes == [] and profile["max_queue_delay_us"] == 0
    else:
        assert all(1 <= s <= spec.max_batch_size for s in sizes)
        assert profile["preferred_batch_sizes"] == sorted(profile["preferred_batch_sizes"])
    if spec.kind == "inference":
        assert profile["kind"] == "KIND_GPU" and profile["warmup_batch_sizes"]
    else:
        assert profile["kind"] == "KIND_CPU" and profile["cuda_graphs"] is False


# --- Kubernetes (kustomize) ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["base", "s3"])
def test_k8s_manifests_validate_against_kubernetes_schemas_when_rendered(overlay, k8s_base, k8s_s3):
    docs = k8s_base if overlay == "base" else k8s_s3
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for doc in docs:
        k8s_validate(doc)


def test_k8s_renderer_rejects_invalid_manifest_when_field_misspelled(k8s_base):
    broken = copy.deepcopy(by_kind(k8s_base, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(broken)


def _triton_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_k8s_deployment_requests_one_gpu(k8s_base):
    resources_ = _triton_container(k8s_base)["resources"]
    assert resources_["limits"]["nvidia.com/gpu"] == "1"
    assert resources_["requests"]["nvidia.com/gpu"] == "1"
    assert {"cpu", "memory"} <= set(resources_["limits"]) and {"cpu", "memory"} <= set(resources_["requests"])


def test_k8s_deployment_probes_live_and_ready_endpoints(k8s_base):
    container = _triton_container(k8s_base)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == contract.HTTP_PORT


def _flag(args: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]


def test_k8s_deployment_drains_in_prestop_through_a_writable_gate_repository(k8s_base):
    pod = by_kind(k8s_base, "Deployment")["spec"]["template"]["spec"]
    container = _triton_container(k8s_base)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["enrichment-light", "drain"]
    from enrichment_light.cli import build_parser

    drain = build_parser().parse_args(command[1:])  # the command parses with the CLI it calls
    assert drain.url == f"127.0.0.1:{contract.HTTP_PORT}"
    assert str(drain.gate_repository) in _flag(container["args"], "--model-repository")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    gate_volume = mounts[str(drain.gate_repository)]
    assert not gate_volume.get("readOnly", False)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[gate_volume["name"]]  # empty at start: the gate model is only written by drain
    assert "explicit" in _flag(container["args"], "--model-control-mode")  # the drain unloads through the API
    # the hook runs inside the Triton image, which installs the wheel --no-deps: the drain's client must be there
    assert '"tritonclient[http]==' in _stage("triton") and "enrichment_light.cli" in _stage("triton")


def test_k8s_termination_grace_exceeds_drain_plus_exit_timeout(k8s_base):
    pod = by_kind(k8s_base, "Deployment")["spec"]["template"]["spec"]
    container = _triton_container(k8s_base)
    from enrichment_light.cli import build_parser

    drain = build_parser().parse_args(container["lifecycle"]["preStop"]["exec"]["command"][1:])
    (exit_timeout,) = (int(v) for v in _flag(container["args"], "--exit-timeout-secs"))
    assert pod["terminationGracePeriodSeconds"] > drain.timeout_s + exit_timeout


def test_k8s_deployment_runs_non_root_with_read_only_repository(k8s_base):
    pod = by_kind(k8s_base, "Deployment")["spec"]["template"]["spec"]
    container = _triton_container(k8s_base)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"]
        == by_kind(k8s_base, "PersistentVolumeClaim")["metadata"]["name"]
    )
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"


def test_k8s_deployment_image_tag_is_the_release(k8s_base):
    assert _triton_container(k8s_base)["image"].endswith(f"-triton:{RELEASE}")


def test_k8s_admin_key_comes_from_secret(k8s_base):
    container = _triton_container(k8s_base)
    env = {e["name"]: e for e in container["env"]}
    assert env["ENRICHMENT_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["key"]
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        ((apis, header, secret),) = restricted_groups(container["args"], flag)
        assert apis >= RESTRICTED and header == "admin-key" and secret == "$(ENRICHMENT_ADMIN_KEY)"


def test_k8s_and_kserve_tritonserver_flags_match_compose(compose, k8s_base):
    expected = server_tuning(compose["services"]["triton"]["command"])
    assert server_tuning(_triton_container(k8s_base)["args"]) == expected
    (runtime,) = load_docs(KSERVE / "servingruntime.yaml")
    (kserve_container,) = runtime["spec"]["containers"]
    assert server_tuning(kserve_container["args"]) == expected


@pytest.mark.parametrize("name", ["enrichment-light", "enrichment-light-headless"])
def test_k8s_services_select_the_deployment_pods_on_contract_ports(k8s_base, name):
    service = by_kind(k8s_base, "Service", name)
    pod_labels = by_kind(k8s_base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {p["name"]: p["containerPort"] for p in _triton_container(k8s_base)["ports"]}
    for port in service["spec"]["ports"]:
        assert port["port"] == container_ports[port["targetPort"]]
    assert {p["port"] for p in service["spec"]["ports"]} <= CONTRACT_PORTS
    assert contract.GRPC_PORT in {p["port"] for p in service["spec"]["ports"]}
    assert (service["spec"].get("clusterIP") == "None") == name.endswith("headless")


def test_k8s_container_ports_match_contract(k8s_base):
    ports = {p["name"]: p["containerPort"] for p in _triton_container(k8s_base)["ports"]}
    assert ports == {"http": contract.HTTP_PORT, "grpc": contract.GRPC_PORT, "metrics": contract.METRICS_PORT}
    args = _triton_container(k8s_base)["args"]
    assert flag_values(args, "--http-port") == [str(contract.HTTP_PORT)]
    assert flag_values(args, "--grpc-port") == [str(contract.GRPC_PORT)]
    assert flag_values(args, "--metrics-port") == [str(contract.METRICS_PORT)]


def test_k8s_hpa_scales_on_adapter_metric_of_inference_models(k8s_base):
    hpa = by_kind(k8s_base, "HorizontalPodAutoscaler")
    deployment = by_kind(k8s_base, "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    rules = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    (rule,) = rules
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]
    models = set()
    for regex in re.findall(r'model=~"([^"]+)"', rule["metricsQuery"]):
        models |= set(regex.split("|"))
    assert models == set(contract.INFERENCE_MODELS)
    assert hpa["spec"]["minReplicas"] >= 1 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def test_k8s_s3_overlay_reads_repository_from_s3_with_secret_credentials(k8s_s3):
    container = _triton_container(k8s_s3)
    repository, *others = flag_values(container["args"], "--model-repository")
    assert repository.startswith("s3://")
    assert others == ["/drain-gate"]  # only the drain's local, empty gate repository besides the bucket
    assert container["envFrom"] == [{"secretRef": {"name": "enrichment-s3-credentials"}}]
    mount_dir = {e["name"]: e.get("value") for e in container["env"]}["TRITON_AWS_MOUNT_DIRECTORY"]
    assert mount_dir in {m["mountPath"] for m in container["volumeMounts"]}
    assert not [d for d in k8s_s3 if d["kind"] == "PersistentVolumeClaim"]
    pod = by_kind(k8s_s3, "Deployment")["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])


# --- KServe -------------------------------------------------------------------------------------


def test_kserve_inferenceservice_uses_runtime_of_the_release():
    (isvc,) = load_docs(KSERVE / "inferenceservice.yaml")
    (runtime,) = load_docs(KSERVE / "servingruntime.yaml")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["runtimeVersion"] == RELEASE
    assert model["storageUri"].startswith(("s3://", "gs://", "pvc://"))
    assert {"name": "triton", "version": "2", "autoSelect": False} in runtime["spec"]["supportedModelFormats"]
    (container,) = runtime["spec"]["containers"]
    assert container["image"].endswith(f":{RELEASE}")
    assert flag_values(container["args"], "--model-repository") == ["/mnt/models"]
    assert [p["containerPort"] for p in container["ports"]] == [contract.HTTP_PORT]
    assert flag_values(container["args"], "--http-port") == [str(contract.HTTP_PORT)]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_kserve_pod_parts_validate_as_kubernetes_pod_spec():
    (isvc,) = load_docs(KSERVE / "inferenceservice.yaml")
    (runtime,) = load_docs(KSERVE / "servingruntime.yaml")
    predictor = isvc["spec"]["predictor"]
    runtime_pod = {"containers": runtime["spec"]["containers"], "volumes": runtime["spec"]["volumes"]}
    isvc_pod = {
        "containers": [{"name": "kserve-container", "image": "x", "resources": predictor["model"]["resources"]}],
        "nodeSelector": predictor["nodeSelector"],
        "serviceAccountName": predictor["serviceAccountName"],
    }
    for spec in (runtime_pod, isvc_pod):
        k8s_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kserve"}, "spec": spec})


# --- Prometheus and Grafana ---------------------------------------------------------------------


def test_prometheus_scrapes_triton_metrics_port(compose):
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"triton:{contract.METRICS_PORT}"]
    assert "triton" in compose["services"]
    mounted = {m["source"] for m in compose["services"]["prometheus"]["volumes"] if m["type"] == "bind"}
    assert "./deploy/prometheus.yml" in mounted


def test_grafana_dashboard_queries_triton_metrics_only():
    dashboard = json.loads((DEPLOY / "grafana" / "enrichment-light.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    metrics = {m for e in exprs for m in re.findall(r"\b(nv_[a-z_]+)\b", e)}
    assert {"nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"} <= metrics
    assert {"nv_gpu_memory_used_bytes", "nv_inference_request_success"} <= metrics
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


# --- perf_analyzer input ------------------------------------------------------------------------


def test_make_perf_input_serializes_image_like_tritonclient(tmp_path):
    from tritonclient.utils import serialize_byte_tensor

    image = tmp_path / "frame.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0fake-jpeg\x00\x01")
    out = tmp_path / "perf.json"
    subprocess.run([sys.executable, str(DEPLOY / "make_perf_input.py"), str(image), str(out)], check=True, timeout=60)
    (step,) = json.loads(out.read_text())["data"]
    payload = base64.b64decode(step[contract.IMAGE_BYTES]["b64"])
    expected = serialize_byte_tensor(np.array([image.read_bytes()], dtype=np.object_)).item()
    assert payload == expected
    assert struct.unpack("<I", payload[:4])[0] == image.stat().st_size


# --- documentation ------------------------------------------------------------------------------


def test_deploy_guide_mentions_every_compose_variable():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert guide.startswith("# Deploy on a GPU host")
    guide += (ROOT / "docs" / "tensorrt.md").read_text()  # the operator's guide for plans and the container
    variables = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE_FILE.read_text()))
    missing = sorted(v for v in variables if v not in guide)
    assert not missing, f"docs/deploy.md and docs/tensorrt.md do not explain {missing}"


# --- plan-builder image: the wheel, LICENSE, and the plan path's imports ---------------------------


def _stage(name: str) -> str:
    """The Dockerfile text of one stage."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", _dockerfile(), flags=re.MULTILINE)
    stages = dict(zip(parts[1::2], parts[2::2], strict=True))
    return stages[name]


def test_dockerfile_plan_builder_installs_the_built_wheel_with_plan_extra_and_license():
    builder = _stage("plan-builder")
    assert "COPY --from=wheel" in builder and " -e " not in builder and "pip install --no-cache-dir -e" not in builder
    assert '"${wheel}[plan]"' in builder and re.search(
        r"wheel=\$\(ls /opt/enrichment/wheels/enrichment_light-\S+\.whl\)", builder
    )
    assert "pip wheel" in _stage("wheel") and "COPY pyproject.toml README.md LICENSE" in _stage("wheel")
    assert re.search(r"^COPY LICENSE", builder, re.MULTILINE) and "/usr/share/licenses/enrichment-light" in builder
    assert "find_spec('torch') is not None" in builder  # the build fails if torch ever sneaks in
    assert "LICENSE" in _stage("triton")
    assert "COPY --from=wheel" in _stage("triton")  # both images install the one wheel


# The plan path: the modules `enrichment-export plan` and `build-repository` run in the image.
# Whole modules, plus in cli.py only the functions of those two subcommands (`onnx` needs torch).
PLAN_PATH_MODULES = ("enrichment_export.tensorrt_plan", "enrichment_export.repository")
PLAN_PATH_CLI_FUNCTIONS = {"main", "build_parser", "_load_plugins", "_add_plan_parser", "_device_from_args",
                           "_plan_onnx", "_run_plan", "_record"}  # fmt: skip
BASE_IMAGE_PROVIDES = {"tensorrt"}  # nvcr.io/nvidia/tensorrt ships it; it is not on PyPI
# Imported only by `--reid-precision bf16`, a cpu-target option the plan builder has no use for; when
# it is missing, that option fails with RuntimeMissingError naming the extra (tests/unit/test_bf16.py).
OPTIONAL_RUNTIMES = {"openvino"}
IMPORT_TO_DISTRIBUTION = {"cv2": "opencv-python-headless", "google": "protobuf", "PIL": "pillow"}


def _module_file(name: str) -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # `package.module.attribute` from `from m import attribute`
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imports(tree: Any, *, functions: set[str] | None, module: str) -> set[str]:
    """Absolute names imported at module level, and inside the chosen functions (all when None)."""
    import ast

    found: set[str] = set()

    def visit(node: Any, inside: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = inside
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and inside is None:
                name = child.name
            wanted = name is None or functions is None or name in functions
            if wanted and isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif wanted and isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(module.split(".")[: -child.level] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            visit(child, name)

    visit(tree, None)
    return found


def plan_path_third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party import names of the plan path, each with the modules that import it."""
    import ast

    todo = [(m, None) for m in PLAN_PATH_MODULES] + [("enrichment_export.cli", PLAN_PATH_CLI_FUNCTIONS)]
    seen: set[str] = set()
    third: dict[str, set[str]] = {}
    while todo:
        module, functions = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        for name in _imports(ast.parse(path.read_text()), functions=functions, module=module):
            top = name.split(".")[0]
            if top in ("enrichment_light", "enrichment_export"):
                parts = name.split(".")
                todo.extend((".".join(parts[:i]), None) for i in range(1, len(parts) + 1))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                third.setdefault(top, set()).add(module)
    return third


def _provided_distributions(requirements: list[str]) -> set[str]:
    """The distributions that installing `requirements` brings (closure over installed metadata)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    provided: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        key = (canonicalize_name(req.name), tuple(sorted(req.extras)))
        if key in provided:
            continue
        provided.add(key)
        try:
            for sub in md.requires(req.name) or []:
                sub_req = Requirement(sub)
                for ex in ("", *req.extras):
                    todo.append((sub_req, ex))
        except md.PackageNotFoundError:
            continue
    return {name for name, _ in provided}


def test_plan_builder_installs_every_third_party_import_of_the_plan_path():
    import tomllib
    from packaging.utils import canonicalize_name

    third = plan_path_third_party_imports()
    assert {"numpy", "onnx", "onnxruntime", "polygraphy", "tensorrt", "tritonclient"} <= set(third)
    assert "torch" not in third and "ultralytics" not in third, third.get("torch") or third.get("ultralytics")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.search(r'"\$\{wheel\}\[([a-z,]+)\]"', _stage("plan-builder")).group(1).split(",")
    wheel_requirements = list(project["dependencies"])
    for extra in extras:
        wheel_requirements += project["optional-dependencies"][extra]
    provided = _provided_distributions(wheel_requirements) | BASE_IMAGE_PROVIDES
    missing = {
        top: sorted(users)
        for top, users in third.items()
        if canonicalize_name(IMPORT_TO_DISTRIBUTION.get(top, top)) not in provided and top not in OPTIONAL_RUNTIMES
    }
    assert not missing, f"the plan-builder image does not install what these imports need: {missing}"


def test_plan_path_import_walk_sees_lazy_imports_inside_functions():
    third = plan_path_third_party_imports()
    assert "enrichment_export.tensorrt_plan" in third["polygraphy"]  # imported inside run_plan only
    assert "enrichment_export.tensorrt_plan" in third["onnxruntime"]


# --- deploy/gpu-smoke.sh ------------------------------------------------------------------------

_SMOKE_STUB = """#!/usr/bin/env bash
printf '%s %s\\n' "$(basename "$0")" "$*" >> "$STUB_LOG"
case "$(basename "$0") $1" in
  "curl "*) exit "${STUB_CURL_RC:-0}" ;;
  "docker compose") if [[ "$*" == *"cat /models/repository.json"* ]]; then echo '{"models": {}}'; fi ;;
  "nvidia-smi "*) if [[ "$*" == *query-compute-apps* ]]; then echo "4242, /opt/tritonserver/bin/tritonserver, 512"
                  else echo "NVIDIA RTX A400, 700 MiB, 4094 MiB"; fi ;;
  "perf_analyzer "*) echo "  Avg latency: 7400 usec (standard deviation 300 usec)" ;;
  "python3 "*) exit "${STUB_PYTHON_RC:-0}" ;;
esac
exit 0
"""


def _run_gpu_smoke(tmp_path: Path, *args: str, **env_overrides: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("docker", "curl", "nvidia-smi", "perf_analyzer", "python3"):
        stub = bin_dir / tool
        stub.write_text(_SMOKE_STUB)
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "STUB_LOG": str(log), "ENRICHMENT_ADMIN_KEY": ADMIN_KEY,
           "ENRICHMENT_SMOKE_TIMEOUT_S": "3", **env_overrides}  # fmt: skip
    proc = subprocess.run(["bash", str(DEPLOY / "gpu-smoke.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    return proc, log.read_text().splitlines() if log.exists() else []


def test_gpu_smoke_runs_every_step_in_order_when_all_pass(tmp_path):
    proc, calls = _run_gpu_smoke(tmp_path)
    assert proc.returncode == 0, proc.stderr
    kinds = [" ".join(c.split()[:3]) for c in calls]
    assert kinds[0] == "docker compose --profile" and "run --rm build-plans" in calls[0]
    assert kinds[1] == "docker compose up" and calls[2].startswith(
        "curl -fsS -o /dev/null http://127.0.0.1:8000/v2/health/ready"
    )
    assert "exec -T triton cat /models/repository.json" in calls[3]
    assert calls[4].startswith("python3 ") and "gpu_smoke_check.py --url 127.0.0.1:8001 --manifest" in calls[4]
    assert calls[5].startswith("nvidia-smi --query-gpu=") and "--id=1" in calls[5]
    assert calls[7].startswith("python3 ") and "make_perf_input.py" in calls[7]
    assert calls[8].startswith("perf_analyzer -m enrich -i grpc -u 127.0.0.1:8001")
    assert "VRAM used by tritonserver: 512 MiB" in proc.stderr and "7.40 ms" in proc.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STUB_PYTHON_RC": "1"}, "client requests or backend check failed"),
        ({"STUB_CURL_RC": "7"}, "Triton not ready after 3s"),
    ],
)
def test_gpu_smoke_exits_non_zero_when_a_step_fails(tmp_path, env, message):
    proc, _ = _run_gpu_smoke(tmp_path, **env)
    assert proc.returncode == 1 and message in proc.stderr


def test_gpu_smoke_fails_on_targets_only_when_enforced(tmp_path):
    proc, _ = _run_gpu_smoke(tmp_path, ENRICHMENT_SMOKE_ENFORCE_TARGETS="1")
    assert proc.returncode == 0, proc.stderr  # 512 MiB (537 MB) <= 600 MB, 7.4 ms <= 8 ms
    slow = tmp_path / "slow"
    slow.mkdir()
    stub = _SMOKE_STUB.replace("Avg latency: 7400 usec", "Avg latency: 9100 usec")
    (slow / "perf_analyzer").write_text(stub)
    (slow / "perf_analyzer").chmod(0o755)
    proc, _ = _run_gpu_smoke(tmp_path, ENRICHMENT_SMOKE_ENFORCE_TARGETS="1",
                             PATH=f"{slow}{os.pathsep}{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")  # fmt: skip
    assert proc.returncode == 1 and "latency 9.10 ms over the 8 ms target" in proc.stderr


def test_gpu_smoke_dry_run_prints_commands_and_runs_nothing(tmp_path):
    proc, calls = _run_gpu_smoke(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr and calls == []
    printed = [line[2:] for line in proc.stderr.splitlines() if line.startswith("+ ")]
    assert printed[0] == "docker compose --profile build run --rm build-plans"
    assert any(p.startswith("perf_analyzer -m enrich") for p in printed) and "nothing was started" in proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"), [(("--now",), {}, "usage"), ((), {"ENRICHMENT_ADMIN_KEY": ""}, "ENRICHMENT_ADMIN_KEY")]
)
def test_gpu_smoke_exits_2_when_misused(tmp_path, args, env, message):
    proc, calls = _run_gpu_smoke(tmp_path, *args, **env)
    assert proc.returncode == 2 and message in proc.stderr and calls == []


def test_gpu_smoke_check_reports_detectors_not_on_tensorrt():
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("gpu_smoke_check", DEPLOY / "gpu_smoke_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    trt = SimpleNamespace(backend="tensorrt", platform="tensorrt_plan")
    ort = SimpleNamespace(backend="onnxruntime", platform="onnxruntime_onnx")
    manifest = {"models": {
        "yolov8n_pose": {"backend": "tensorrt"},
        "yolov8n_threat": {"backend": "onnxruntime", "fallback": {"reason": "built with TensorRT 10.3"}},
    }}  # fmt: skip
    assert check.backend_problems({"yolov8n_pose": trt, "yolov8n_threat": trt}, {"models": {
        "yolov8n_pose": {"backend": "tensorrt"}, "yolov8n_threat": {"backend": "tensorrt"}}}) == []  # fmt: skip
    problems = check.backend_problems({"yolov8n_pose": trt, "yolov8n_threat": ort}, manifest)
    assert len(problems) == 2 and "built with TensorRT 10.3" in problems[0] and "onnxruntime_onnx" in problems[1]


def test_plan_import_check_detects_a_missing_extra_when_image_installs_base_wheel_only():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    provided = _provided_distributions(list(project["dependencies"]))
    assert {"numpy", "tritonclient", "protobuf", "opencv-python-headless"} <= provided
    assert not {"polygraphy", "onnxruntime", "onnx"} & provided  # without [plan] these would be missing


def test_build_plans_script_exits_2_when_osnet_tensorrt_is_not_0_or_1(tmp_path, monkeypatch):
    monkeypatch.setenv("ENRICHMENT_OSNET_TENSORRT", "yes")
    proc, calls = _run_build_plans(tmp_path, extra_env=True)
    assert proc.returncode == 2 and "ENRICHMENT_OSNET_TENSORRT must be 0 or 1" in proc.stderr and calls == []


def test_build_plans_script_with_real_cli_serves_each_detector_from_onnx_when_no_tensorrt(tmp_path):
    """The script and the real export CLI together: a GPU is reported (fake nvidia-smi) but TensorRT
    is missing, so no plan is built and each detector falls back with the reason recorded."""
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    try:
        from test_repository import _fake_onnx
    finally:
        sys.path.pop(0)
    onnx_dir = tmp_path / "onnx"
    for name in contract.INFERENCE_MODELS:
        _fake_onnx(onnx_dir / f"{name}.onnx", name)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text('#!/bin/sh\necho "8.6, NVIDIA RTX A400"\n')
    (fake / "nvidia-smi").chmod(0o755)
    env = {
        "PATH": f"{fake}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ENRICHMENT_ONNX_DIR": str(onnx_dir),
        "ENRICHMENT_PLAN_CACHE": str(tmp_path / "cache"),
        "ENRICHMENT_REPOSITORY": str(tmp_path / "models"),
        "ENRICHMENT_GPU_PROFILE": str(DEPLOY / "gpu-profile.json"),
        "ENRICHMENT_SOURCE_REPOSITORY": str(ROOT / "model_repository"),
    }
    proc = subprocess.run(["bash", str(DEPLOY / "build-plans.sh")], env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    manifest = json.loads((tmp_path / "models" / "repository.json").read_text())
    # the plan step fails once, in one line, before any model (no TensorRT for any of them) ...
    assert "enrichment-export plan: error: TensorRT is not installed" in proc.stderr
    assert "fall back to ONNX on onnxruntime" in proc.stderr
    # ... and the repository builder still serves each detector, with the reason recorded
    for name in ("yolov8n_pose", "yolov8n_threat"):
        entry = manifest["models"][name]
        assert entry["backend"] == "onnxruntime" and "TensorRT is not installed" in entry["fallback"]["reason"]
        assert entry["triton_backend"] == "onnxruntime_onnx"
    assert manifest["models"][contract.REID_MODEL]["backend"] == "onnxruntime"
