"""The ``enrichment-light`` command line: ``analyze``, ``health`` and ``serve``.

``analyze`` and ``health`` need only the light client install. ``serve`` runs the exporters (found
through an entry point: torch, Ultralytics) and the embedded server lazily, only when it runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, Any

from enrichment_light.client.transport import PROTOCOLS, URL_ENV
from enrichment_light.core import contract as ct
from enrichment_light.core import package_data
from enrichment_light.core.errors import EnrichmentError
from enrichment_light.core.openvino_session import REID_PRECISIONS

logger = logging.getLogger("enrichment_light.cli")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
UNTRAINED_BANNER = (
    "=" * 78
    + "\n  UNTRAINED MODELS: random-init weights (--untrained). Every detection, pose,\n"
    + "  threat and embedding below is MEANINGLESS; this run only proves the pipeline.\n"
    + "=" * 78
)


# --------------------------------------------------------------------------------------------- helpers


class Progress:
    """A one-line ``[done/total] name`` progress display on a stream (no tqdm)."""

    def __init__(self, total: int, *, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 1
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def advance(self, label: str) -> None:
        """Count one item as done and redraw the line."""
        with self._lock:
            self.done += 1
            if not self.enabled:
                return
            rate = self.done / max(time.monotonic() - self._start, 1e-9)
            line = f"\r[{self.done}/{self.total}] {rate:.1f} img/s  {label[-50:]}"
            self.stream.write(line.ljust(80))
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders expand to their image files (sorted, not recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return out


def annotated_path(directory: Path, source: Path, index: int, used: set[str]) -> Path:
    """``DIR/<stem>_annotated.<jpg|png>``, made unique when two inputs share a stem."""
    suffix = ".png" if source.suffix.lower() == ".png" else ".jpg"
    name = f"{source.stem}_annotated{suffix}"
    if name in used:
        name = f"{source.stem}_{index}_annotated{suffix}"
    used.add(name)
    return directory / name


def sample_images() -> list[Path]:
    """The sample photos that ship with the package (``bus.jpg`` and ``zidane.jpg``)."""
    return package_data.sample_images()


# --------------------------------------------------------------------------------------------- analyze


def analyze(
    paths: Sequence[Path],
    *,
    url: str | None,
    protocol: str,
    json_out: Path | None,
    annotate_dir: Path | None,
    concurrency: int = 4,
    timeout_s: float = 120.0,
    progress: bool = True,
    conf: float | None = None,
    iou: float | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Run ``enrich`` on every image; write JSON and annotated images.

    Returns:
        ``(records, failures)``: one ``{"path", "result"}`` (or ``{"path", "error"}``) per image.
    """
    from enrichment_light.client import EnrichmentClient

    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(paths), enabled=progress)
    records: list[dict[str, Any] | None] = [None] * len(paths)
    used: set[str] = set()
    used_lock = threading.Lock()

    def one(index: int, path: Path, client: EnrichmentClient) -> dict[str, Any]:
        data = path.read_bytes()
        result = client.enrich(data, conf=conf, iou=iou)
        record: dict[str, Any] = {"path": str(path), "result": result.to_dict()}
        if annotate_dir is not None:
            from enrichment_light.client.annotate import draw_enrichment, save_annotated
            from enrichment_light.core.processing.image import decode_image

            with used_lock:
                target = annotated_path(annotate_dir, path, index, used)
            save_annotated(target, draw_enrichment(decode_image(data), result))
            record["annotated"] = str(target)
        return record

    failures = 0
    with (
        EnrichmentClient(url, protocol=protocol, timeout_s=timeout_s) as client,
        ThreadPoolExecutor(max(1, concurrency)) as pool,
    ):
        futures = {pool.submit(one, i, p, client): i for i, p in enumerate(paths)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                records[i] = future.result()
            except (EnrichmentError, OSError) as err:
                failures += 1
                logger.error("%s: %s", paths[i], err)
                records[i] = {"path": str(paths[i]), "error": f"{type(err).__name__}: {err}"}
            bar.advance(paths[i].name)
    done = [r for r in records if r is not None]
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(done, indent=2) + "\n")
        logger.info("wrote %s", json_out)
    return done, failures


def summary_line(record: dict[str, Any]) -> str:
    """One human line per analysed image."""
    if "error" in record:
        return f"{record['path']}: ERROR {record['error']}"
    result = record["result"]
    poses = ", ".join(p["pose"]["pose_class"] for p in result["persons"]) or "-"
    threats = result["threats"]
    return (
        f"{record['path']}: {len(result['persons'])} person(s) [{poses}]; "
        f"{len(threats['threats'])} threat(s), max severity {threats['max_severity']}; "
        f"{result['inference_time_ms']:.0f} ms"
    )


def cmd_analyze(args: argparse.Namespace) -> int:
    """``analyze``: exit 0 when every image was analysed, 1 when some failed, 2 for no images."""
    paths = expand_paths(args.paths)
    if not paths:
        logger.error("no images given")
        return 2
    records, failures = analyze(
        paths,
        url=args.url,
        protocol=args.protocol,
        json_out=args.json,
        annotate_dir=args.annotate,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        progress=not args.quiet,
        conf=args.conf,
        iou=args.iou,
    )
    for record in records:
        print(summary_line(record))
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- health


def health_table(report: dict[str, Any]) -> str:
    """Render :meth:`EnrichmentClient.health` as a text table."""
    lines = [
        f"server {', '.join(report['urls'])}: live={report['live']} ready={report['ready']}",
        f"{'model':<20} {'ready':<6} {'backend':<12} {'device':<7} precision",
    ]
    for name, entry in report["models"].items():
        ready = "yes" if entry["ready"] else "no"
        precision = entry.get("precision", "-")
        lines.append(f"{name:<20} {ready:<6} {entry['backend']:<12} {entry['device']:<7} {precision}")
    return "\n".join(lines)


def cmd_health(args: argparse.Namespace) -> int:
    """``health``: exit 0 when the server and every model are ready, else 1."""
    from enrichment_light.client import EnrichmentClient

    with EnrichmentClient(args.url, protocol=args.protocol, timeout_s=args.timeout, retries=0) as client:
        report = client.health()
    print(json.dumps(report, indent=2) if args.json_output else health_table(report))
    return 0 if report["live"] and report["ready"] and all(m["ready"] for m in report["models"].values()) else 1


# --------------------------------------------------------------------------------------------- serve


def default_repository_dir(untrained: bool) -> Path:
    """Where ``serve`` builds its repository: the user cache, one folder per weights kind."""
    base = Path(os.environ.get("ENRICHMENT_LIGHT_CACHE_DIR", "~/.cache/enrichment-light")).expanduser()
    return base / ("repository-cpu-untrained" if untrained else "repository-cpu")


#: Entry-point group through which the exporters offer the repository build that ``serve`` runs.
#: ``enrichment_export`` registers ``cpu`` in it (pyproject.toml), so this package never imports
#: the exporters: the dependency points one way, export -> enrichment_light.
REPOSITORY_BUILDERS = "enrichment_light.repository_builders"


def build_cpu_repository(
    out_dir: Path,
    *,
    untrained: bool,
    weights: dict[str, str] | None = None,
    rebuild: bool = False,
    managed: bool = False,
    reid_precision: str = "fp32",
) -> Path:
    """Export the three models to ONNX and build the ``cpu`` target repository.

    The work is done by the builder registered as ``cpu`` in the ``enrichment_light.repository_builders``
    entry-point group (``enrichment_export.cpu_repository.build_cpu_repository``).

    Args:
        out_dir: Repository folder (its ``artifacts`` sibling holds the ONNX files).
        untrained: Random-init weights (offline smoke runs; results are meaningless).
        weights: Weights per contract model name (file path or official name).
        rebuild: Rebuild even when the repository is current.
        managed: `out_dir` is ``serve``'s own folder: rebuilt when an older version built it.
        reid_precision: ``fp32``, or ``bf16`` (OSNet through OpenVINO, after its accuracy gate;
            docs/int8.md).

    Returns:
        The repository folder.

    Raises:
        EnrichmentError: No builder is installed (the ``export`` extra is missing).
    """
    found = importlib.metadata.entry_points(group=REPOSITORY_BUILDERS, name="cpu")
    if not found:
        raise EnrichmentError(
            "serve builds its model repository with the exporters, which are not installed: "
            "pip install 'enrichment-light[export,serve]'"
        )
    try:
        builder = next(iter(found)).load()
    except ImportError as err:
        raise EnrichmentError(
            f"the repository builder cannot be imported ({err}): pip install 'enrichment-light[export,serve]'"
        ) from err
    return builder(
        out_dir, untrained=untrained, weights=weights, rebuild=rebuild, managed=managed, reid_precision=reid_precision
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: build if needed, start Triton, then block or ``--analyze`` and stop."""
    from enrichment_light.devserver import EmbeddedServer, serve_forever

    if args.untrained:
        print(UNTRAINED_BANNER, file=sys.stderr, flush=True)
    repo = args.repository or default_repository_dir(args.untrained)
    weights = {ct.POSE_MODEL: args.pose_weights, ct.THREAT_MODEL: args.threat_weights, ct.REID_MODEL: args.reid_weights}
    build_cpu_repository(
        repo,
        untrained=args.untrained,
        weights={k: v for k, v in weights.items() if v},
        rebuild=args.rebuild,
        managed=args.repository is None,
        reid_precision=args.reid_precision,
    )
    # explicit mode with every model loaded at start: same models as "none", and it lets the stub
    # watchdog reload a model whose Python-backend stub died (Triton 2.51 does not restart it)
    server = EmbeddedServer(
        repo,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        model_control="explicit",
        load_models=["*"],
        restart_dead_stubs=not args.no_stub_watchdog,
    )
    if args.analyze is None:
        return serve_forever(server)
    paths = expand_paths(args.analyze) if args.analyze else sample_images()
    if not paths:
        logger.error("no images to analyse: pass --analyze PATH... (the packaged sample photos are missing)")
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with server:
        print(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}", flush=True)
        records, failures = analyze(
            paths,
            url=server.grpc_url,
            protocol="grpc",
            json_out=out / "results.json",
            annotate_dir=out,
            conf=args.conf,
            iou=args.iou,
        )
    for record in records:
        print(summary_line(record))
    print(f"wrote {out / 'results.json'} and {len(records) - failures} annotated image(s) to {out}")
    if args.untrained:
        print(UNTRAINED_BANNER, file=sys.stderr, flush=True)
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- parser


def _add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", default=None, help=f"Triton host:port (comma-separated for fail-over; default ${URL_ENV} or localhost)"
    )
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc", help="wire protocol (default grpc)")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")


def _add_threshold_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conf", type=float, default=None, help="detection confidence override (default: server config)")
    p.add_argument("--iou", type=float, default=None, help="NMS IoU override (default: server config)")


def cmd_drain(args: argparse.Namespace) -> int:
    """``drain``: take a running Triton out of service without failing a request (a Kubernetes preStop hook)."""
    from enrichment_light.client.transport import admin_headers
    from enrichment_light.devserver import drain_server

    headers = admin_headers(args.admin_key, protocol="http")
    try:
        report = drain_server(args.url, gate_repository=args.gate_repository, timeout_s=args.timeout_s, headers=headers)
    except OSError as err:
        logger.error("cannot write the readiness gate under %s: %s", args.gate_repository, err.strerror or err)
        return 2
    waves = " then ".join(map(",".join, report.waves)) or "nothing"
    print(f"not ready after {report.unready_s:.3f} s; unloaded {waves} in {report.drained_s:.2f} s", flush=True)
    if not report.complete:
        logger.error("drain budget of %s s spent; still loaded: %s", args.timeout_s, ", ".join(report.left))
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``enrichment-light`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="enrichment-light", description="Person re-id, pose and threat detection on Triton."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="run enrich on images; write JSON and annotated images")
    p.add_argument("paths", nargs="+", help="image files or folders")
    _add_client_options(p)
    p.add_argument("--json", type=Path, default=None, help="write [{path, result}, ...] here")
    p.add_argument("--annotate", type=Path, default=None, metavar="DIR", help="write annotated images here")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    _add_threshold_options(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("health", help="server liveness/readiness and each model's readiness and backend")
    _add_client_options(p)
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("serve", help="build the cpu repository if needed and run the embedded Triton server")
    p.add_argument("--repository", type=Path, default=None, help="repository folder (default: user cache)")
    p.add_argument("--untrained", action="store_true", help="random-init weights (offline smoke runs)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the repository even if it exists")
    p.add_argument("--pose-weights", default=None, help="yolov8n-pose checkpoint path or official name")
    p.add_argument("--threat-weights", default=None, help="threat detector checkpoint path or official name")
    p.add_argument("--reid-weights", default=None, help="OSNet-x0.25 checkpoint path or official name")
    p.add_argument(
        "--reid-precision",
        choices=REID_PRECISIONS,
        default="fp32",
        help="bf16: OSNet through OpenVINO in bf16 on a CPU with native bf16, after an accuracy gate "
        "(the openvino extra; applies when serve builds the repository)",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--http-port", type=int, default=ct.HTTP_PORT)
    p.add_argument("--grpc-port", type=int, default=ct.GRPC_PORT)
    p.add_argument("--metrics-port", type=int, default=ct.METRICS_PORT)
    p.add_argument(
        "--no-stub-watchdog",
        action="store_true",
        help="do not reload a model whose Python-backend stub died (Triton 2.51 does not restart stubs)",
    )
    p.add_argument(
        "--analyze",
        nargs="*",
        default=None,
        metavar="PATH",
        help="analyse these photos (default: Ultralytics' bus.jpg and zidane.jpg), then stop",
    )
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder for --analyze (default out/)")
    _add_threshold_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("drain", help="readiness off, wait for in-flight requests, unload every model (preStop)")
    p.add_argument("--url", default=f"127.0.0.1:{ct.HTTP_PORT}", help="HTTP host:port of the server")
    p.add_argument(
        "--gate-repository",
        type=Path,
        required=True,
        help="a writable folder the server was started with as --model-repository (holds the readiness gate)",
    )
    p.add_argument("--timeout-s", type=float, default=20.0, help="drain budget in seconds (default 20)")
    p.add_argument("--admin-key", default=None, help="key of the restricted repository API ($ENRICHMENT_ADMIN_KEY)")
    p.set_defaults(func=cmd_drain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except EnrichmentError as err:
        logger.error("%s", err)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
