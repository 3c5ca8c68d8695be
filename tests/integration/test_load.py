"""Bounded load on the embedded server (loopback only): 8 clients mixing enrich, pose, threat and re-id.

About 5 % of the requests are malformed (truncated or garbage image bytes, a box outside the image).
Pass: no valid request fails, every malformed one raises ``InvalidInputError``, and the RSS of
the server plus its stubs grows by at most 10 % from the warm point to the end. p50/p99 latency per
operation is printed (``-rA`` shows it).

- Default run (CI): 18 s of load, RSS measured from the 6 s warm point.
- Full run: ``python -m pytest -m slow tests/integration/test_load.py -rA`` (60 s, warm point 20 s);
  ``ENRICHMENT_LOAD_S`` overrides the full duration.
"""

from __future__ import annotations

import json
import os

import pytest
from _robustness_fixtures import *  # noqa: F403
from _robustness_fixtures import assert_all_ready, is_invalid_input, run_load, stub_pids, warm_up

pytestmark = pytest.mark.integration

MAX_RSS_GROWTH = 0.10


def _check(server, report) -> None:
    summary = report.summary()
    print("load summary:", json.dumps(summary, indent=2))
    assert report.requests > 0
    assert not report.valid_failures, report.valid_failures[:5]
    assert report.malformed_outcomes, "the run was too short to send a malformed request"
    wrong = [o for o in report.malformed_outcomes if not is_invalid_input(o)]
    assert not wrong, wrong[:5]
    assert report.rss_growth <= MAX_RSS_GROWTH, summary["rss_mib"]
    for op in ("enrich", "pose", "threat", "reid"):
        assert summary["ops"].get(op, {}).get("count", 0) > 0, f"no successful {op} request"
    assert_all_ready(server)


@pytest.fixture(scope="module")
def warmed_server(enrichment_server):
    warm_up(enrichment_server)
    return enrichment_server


def test_load_serves_every_valid_request_when_8_clients_mix_operations_briefly(warmed_server):
    stubs = stub_pids(warmed_server)
    report = run_load(warmed_server, duration_s=18.0, warm_s=6.0)
    _check(warmed_server, report)
    assert stub_pids(warmed_server) == stubs, "a stub process died or was restarted under load"


@pytest.mark.slow
def test_load_serves_every_valid_request_when_8_clients_mix_operations_for_a_minute(warmed_server):
    duration = float(os.environ.get("ENRICHMENT_LOAD_S", "60"))
    stubs = stub_pids(warmed_server)
    report = run_load(warmed_server, duration_s=duration, warm_s=duration / 3)
    _check(warmed_server, report)
    assert stub_pids(warmed_server) == stubs, "a stub process died or was restarted under load"
