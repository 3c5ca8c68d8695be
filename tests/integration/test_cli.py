"""The ``enrichment-light`` CLI on the sample photos against the embedded server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _client_fixtures import *  # noqa: F403

from enrichment_light.cli import main
from enrichment_light.core import contract as ct
from enrichment_light.core.processing.image import decode_image

pytestmark = pytest.mark.integration


def test_cli_analyze_writes_json_and_annotated_images_of_original_size(
    enrichment_server, sample_paths, tmp_path, capsys
):
    out_json, out_dir = tmp_path / "results.json", tmp_path / "annotated"
    code = main(
        ["analyze", *map(str, sample_paths), "--url", enrichment_server.grpc_url, "--json", str(out_json),
         "--annotate", str(out_dir)]
    )  # fmt: skip
    assert code == 0
    records = json.loads(out_json.read_text())
    assert [r["path"] for r in records] == [str(p) for p in sample_paths]
    for record, source in zip(records, sample_paths, strict=True):
        assert {"threats", "persons", "image_height", "image_width"} <= set(record["result"])
        annotated = decode_image((out_dir / f"{source.stem}_annotated.jpg").read_bytes())
        assert annotated.shape == decode_image(source.read_bytes()).shape
    captured = capsys.readouterr()
    assert "person(s)" in captured.out
    assert "[2/2]" in captured.err  # the progress line


def test_cli_analyze_over_http_reports_failures_with_exit_code_1(enrichment_server, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0not a jpeg")
    out_json = tmp_path / "r.json"
    code = main(
        ["analyze", str(bad), "--url", enrichment_server.http_url, "--protocol", "http", "--json", str(out_json)]
    )
    assert code == 1
    (record,) = json.loads(out_json.read_text())
    assert "InvalidInputError" in record["error"]


@pytest.mark.parametrize(("conf", "expect_persons"), [(None, False), ("0.001", True)])
def test_cli_analyze_sends_conf_override_to_enrich_when_given(
    enrichment_server, sample_paths, tmp_path, conf, expect_persons
):
    # Random-init detectors score about 0.5 everywhere: nothing passes the default, everything passes 0.001.
    out_json = tmp_path / "r.json"
    extra = [] if conf is None else ["--conf", conf]
    argv = ["analyze", str(sample_paths[0]), "--url", enrichment_server.grpc_url, "--json", str(out_json), "-q"]
    assert main([*argv, *extra]) == 0
    (record,) = json.loads(out_json.read_text())
    assert bool(record["result"]["persons"]) is expect_persons


def test_cli_analyze_rejects_conf_out_of_range_with_a_clear_error(enrichment_server, sample_paths, tmp_path):
    out_json = tmp_path / "r.json"
    argv = ["analyze", str(sample_paths[0]), "--url", enrichment_server.grpc_url, "--json", str(out_json), "-q"]
    assert main([*argv, "--conf", "1.5"]) == 1
    (record,) = json.loads(out_json.read_text())
    assert "InvalidInputError" in record["error"] and "must be in [0, 1], got 1.5" in record["error"]


def test_cli_health_lists_every_model_with_its_backend(enrichment_server):
    proc = subprocess.run(
        [sys.executable, "-m", "enrichment_light.cli", "health", "--url", enrichment_server.grpc_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "live=True ready=True" in lines[0]
    for model in ct.ALL_MODELS:
        (row,) = [line for line in lines if line.split()[0] == model]
        assert row.split()[1] == "yes"
    for model in ct.INFERENCE_MODELS:
        row = next(line for line in lines if line.split()[0] == model).split()
        assert row[2] == "onnxruntime" and row[4] == "fp32"  # backend, device, precision


def test_cli_health_exits_1_when_server_is_down(closed_port_url, capsys):
    assert main(["health", "--url", closed_port_url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["live"] is False


def test_cli_analyze_and_health_import_no_heavy_modules():
    code = (
        "import sys, enrichment_light.cli as c; c.build_parser().parse_args(['health']);"
        "import enrichment_light.client, enrichment_light.client.facades, enrichment_light.client.aio;"
        "heavy = ('torch', 'ultralytics', 'onnxruntime', 'enrichment_export');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_cli_serve_untrained_analyze_runs_the_main_job(tmp_path):
    """``serve --untrained --analyze``: build (cached), start, analyse the sample photos, stop."""
    args = ["serve", "--untrained", "--analyze", "--out", str(tmp_path / "out"), "--repository", str(tmp_path / "repo")]
    ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    proc = subprocess.run(
        [sys.executable, "-m", "enrichment_light.cli", *args, *ports],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEANINGLESS" in proc.stderr
    records = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(records) == 2
    assert all("result" in r for r in records)
    assert len(list((tmp_path / "out").glob("*_annotated.jpg"))) == 2
