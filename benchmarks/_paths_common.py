"""Shared pieces of ``compare.py``: workloads, the timed runner, statistics and the report writers."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enrichment_light.cli import sample_images

CROP_BATCH = 32


def photos() -> list[bytes]:
    """Ultralytics' two sample photos (bus.jpg 810x1080, zidane.jpg 1280x720), encoded."""
    paths = sample_images()
    if len(paths) != 2:
        raise RuntimeError("Ultralytics' sample photos bus.jpg and zidane.jpg are not installed")
    return [path.read_bytes() for path in paths]


def person_crops(n: int = CROP_BATCH, seed: int = 0) -> list[np.ndarray]:
    """``n`` person-sized RGB crops (60-160 x 140-420 px) cut from bus.jpg at seeded positions."""
    from enrichment_light.core.processing.image import decode_image

    image = decode_image(photos()[0])
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        ch, cw = int(rng.integers(140, 420)), int(rng.integers(60, 160))
        y, x = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
        crops.append(np.ascontiguousarray(image[y : y + ch, x : x + cw]))
    return crops


@dataclass
class Cell:
    """Measurements of one (workload, path, concurrency) cell, summed over rounds."""

    items: int = 0
    units: int = 0  # images or crops
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    sub_latencies_s: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0

    def add(self, other: Cell) -> None:
        self.items += other.items
        self.units += other.units
        self.wall_s += other.wall_s
        self.latencies_s += other.latencies_s
        self.errors += other.errors
        for k, v in other.sub_latencies_s.items():
            self.sub_latencies_s.setdefault(k, []).extend(v)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        out = {
            "items": self.items,
            "units": self.units,
            "wall_s": round(self.wall_s, 3),
            "throughput_per_s": round(self.units / self.wall_s, 3) if self.wall_s else 0.0,
            "median_ms": round(statistics.median(lat) * 1e3, 2) if lat else None,
            "p95_ms": round(percentile(lat, 95) * 1e3, 2) if lat else None,
            "errors": self.errors,
        }
        for k, v in sorted(self.sub_latencies_s.items()):
            out[f"{k}_median_ms"] = round(statistics.median(v) * 1e3, 2) if v else None
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(np.ceil(q / 100.0 * len(sorted_values))) - 1))
    return sorted_values[k]


Item = Callable[[int, dict[str, list[float]]], int]  # (index, sub-latency sink) -> units done


def run_cell(item: Item, concurrency: int, duration_s: float, *, max_items: int = 100_000) -> Cell:
    """Run ``item`` from ``concurrency`` threads until ``duration_s`` has passed (each finishes its item).

    Throughput is units over the wall time from the start to the last completion.
    """
    cell = Cell()
    lock = threading.Lock()
    counter = iter(range(max_items))
    start = time.perf_counter()
    deadline = start + duration_s
    last_done = [start]
    failures: list[BaseException] = []

    def worker() -> None:
        local_lat: list[float] = []
        local_sub: dict[str, list[float]] = {}
        units = items = 0
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                units += item(i, local_sub)
            except Exception as err:  # counted, the first one is re-raised below
                with lock:
                    cell.errors += 1
                    failures.append(err)
                continue
            t1 = time.perf_counter()
            local_lat.append(t1 - t0)
            items += 1
            with lock:
                last_done[0] = max(last_done[0], t1)
        with lock:
            cell.items += items
            cell.units += units
            cell.latencies_s += local_lat
            for k, v in local_sub.items():
                cell.sub_latencies_s.setdefault(k, []).extend(v)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + 120.0)  # bounded: one item never takes two minutes
    cell.wall_s = last_done[0] - start
    if failures:
        raise RuntimeError(f"{len(failures)} benchmark items failed; first: {failures[0]!r}") from failures[0]
    return cell


def timed(sink: dict[str, list[float]], key: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    sink.setdefault(key, []).append(time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------------------ report


@dataclass(frozen=True)
class Targets:
    """Issue 12's benchmark targets (ratios from one run)."""

    pose_threat_vs_seed: float = 1.5  # (c) FP32 throughput >= 1.5 x (a) at concurrency 1 and 4
    pose_threat_vs_seed_int8: float = 2.2  # the same with INT8
    seed_concurrencies: tuple[str, ...] = ("1", "4")
    overhead_vs_onnxruntime: float = 0.10  # (b) / (c) - 1 <= 10 % at 1, 4, 8 (INT8 against bare INT8)
    reid_vs_onnxruntime: float = 1.0  # re-id end to end >= 1.0 x bare onnxruntime at batch 32


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


def analyse(results: dict[str, Any], *, seed_path: str, ort_path: str, triton_paths: list[str]) -> dict[str, Any]:
    """Add ratios to (a) and (b) and evaluate the targets.

    A path whose name ends in ``_int8`` or ``_int8_frame`` is held to the INT8 target. A path's
    overhead is measured against the bare onnxruntime path with the same tag (``<ort_path>_int8``,
    ``<ort_path>_frame``, ``<ort_path>_int8_frame``; ``_enrich`` against ``_frame``) when that path
    ran, else against `ort_path` (or its ``_int8``).
    """
    targets = Targets()
    ratios: dict[str, Any] = {}
    for workload, by_conc in results["cells"].items():
        for conc, by_path in by_conc.items():
            seed = by_path.get(seed_path, {}).get("throughput_per_s")
            ort = by_path.get(ort_path, {}).get("throughput_per_s")
            for path, s in by_path.items():
                tp = s.get("throughput_per_s")
                ratios.setdefault(workload, {}).setdefault(conc, {})[path] = {
                    "throughput_vs_seed": _ratio(tp, seed),
                    "throughput_vs_onnxruntime": _ratio(tp, ort),
                    "median_latency_vs_seed": _ratio(s.get("median_ms"), by_path.get(seed_path, {}).get("median_ms")),
                }
    checks = []

    def check(target: str, path: str, conc: str, value: float | None, ok: bool) -> None:
        checks.append({"target": target, "path": path, "concurrency": conc, "value": value, "met": ok})

    for conc, by_path in results["cells"].get("pose+threat", {}).items():
        seed = by_path.get(seed_path, {}).get("throughput_per_s")
        for path in triton_paths:
            tp = by_path.get(path, {}).get("throughput_per_s")
            if tp is None:
                continue
            int8 = path.endswith(("_int8", "_int8_frame"))
            per_frame = path.endswith(("_frame", "_enrich"))
            baseline = ort_path + ("_int8" if int8 else "") + ("_frame" if per_frame else "")
            baseline = baseline if baseline in by_path else ort_path + ("_int8" if int8 else "")
            ort = by_path.get(baseline, {}).get("throughput_per_s")
            if conc in targets.seed_concurrencies:
                want = targets.pose_threat_vs_seed_int8 if int8 else targets.pose_threat_vs_seed
                r_seed = _ratio(tp, seed)
                check(f"pose+threat >= {want} x (a)", path, conc, r_seed, r_seed is not None and r_seed >= want)
            overhead = round(ort / tp - 1.0, 3) if ort and tp else None
            ok = overhead is not None and overhead <= targets.overhead_vs_onnxruntime
            check(f"overhead vs {baseline.replace(ort_path, '(b)')} <= {targets.overhead_vs_onnxruntime:.0%}",
                  path, conc, overhead, ok)  # fmt: skip
    for conc, by_path in results["cells"].get("reid@32", {}).items():
        ort = by_path.get(ort_path, {}).get("throughput_per_s")
        for path in triton_paths:
            r = _ratio(by_path.get(path, {}).get("throughput_per_s"), ort)
            if r is not None:
                want = targets.reid_vs_onnxruntime
                check(f"re-id@32 >= {want} x (b)", path, conc, r, r >= want)
    results["ratios"] = ratios
    results["targets"] = asdict(targets)
    results["checks"] = checks
    return results


def _fmt(v: Any, suffix: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{v}{suffix}"


def markdown(results: dict[str, Any], labels: dict[str, str]) -> str:
    """The Markdown tables shown in docs/benchmarks.md."""
    meta = results["meta"]
    lines = [
        f"Run {meta['started']} on {meta['cpus']} CPU cores ({meta['cpu_model']}), {meta['mode']} mode, "
        f"{meta['rounds']} interleaved round(s) of {meta['cell_s']:g} s per cell, {meta['weights']} weights; "
        f"total {meta['total_s']:.0f} s. (b) in the ratio columns is {meta.get('baseline_b', 'bare onnxruntime')}.",
        "",
    ]
    if meta.get("int8_gate"):
        lines += [
            "**INT8 accuracy gate** (INT8 vs FP32, held-out frames; forced past the gate for this run)",
            "",
            "| model | passed | recall | precision | mean abs score diff | frames |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for model, g in meta["int8_gate"].items():
            lines.append(f"| {model} | {g['passed']} | {_fmt(g['recall'])} | {_fmt(g['precision'])} | "
                         f"{_fmt(g['mean_score_diff'])} | {g['frames']} |")  # fmt: skip
        lines.append("")
    units = {"pose+threat": "images/s", "reid@32": "crops/s"}
    for workload, by_conc in results["cells"].items():
        lines += [
            f"**{workload}** (throughput in {units.get(workload, 'items/s')}; latency of one item; "
            "ratios are throughput ratios at the same concurrency)",
            "",
            "| path | conc | median ms | p95 ms | throughput | × (a) | × (b) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for conc, by_path in by_conc.items():
            for path, s in by_path.items():
                r = results["ratios"][workload][conc][path]
                lines.append(
                    f"| {labels.get(path, path)} | {conc} | {_fmt(s['median_ms'])} | {_fmt(s['p95_ms'])} | "
                    f"{_fmt(s['throughput_per_s'])} | {_fmt(r['throughput_vs_seed'])} | "
                    f"{_fmt(r['throughput_vs_onnxruntime'])} |"
                )
        lines.append("")
    lines += ["**Targets**", "", "| target | path | conc | value | met |", "|---|---|---:|---:|---|"]
    for c in results["checks"]:
        lines.append(
            f"| {c['target']} | {labels.get(c['path'], c['path'])} | {c['concurrency']} | {_fmt(c['value'])} | "
            f"{'yes' if c['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], labels: dict[str, str], out: Path) -> None:
    """A small PNG: throughput per path and concurrency, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(results["cells"])
    fig, axes = plt.subplots(1, len(workloads), figsize=(5.2 * len(workloads), 3.4), dpi=80)
    axes = np.atleast_1d(axes)
    for ax, workload in zip(axes, workloads, strict=True):
        by_conc = results["cells"][workload]
        concs = list(by_conc)
        paths = list(next(iter(by_conc.values())))
        width = 0.8 / len(paths)
        for i, path in enumerate(paths):
            values = [by_conc[c].get(path, {}).get("throughput_per_s") or 0 for c in concs]
            ax.bar(np.arange(len(concs)) + i * width, values, width, label=labels.get(path, path))
        ax.set_xticks(np.arange(len(concs)) + 0.4 - width / 2, [f"conc {c}" for c in concs])
        ax.set_title(workload)
        ax.set_ylabel("crops/s" if workload.startswith("reid") else "images/s")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
