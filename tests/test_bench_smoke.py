"""The benchmark's --quick mode end to end (small sizes, one round, A/A pass included), so the
runner and every scenario keep working against both registries; and no process outlives it."""

import json
import os
import subprocess
import sys

import pytest

try:
    from support.daemon import REPO_ROOT
    from support.goregistry import requires_go
except ImportError:  # tests is a package
    from tests.support.daemon import REPO_ROOT
    from tests.support.goregistry import requires_go

pytestmark = [pytest.mark.e2e, requires_go]


def _processes_mentioning(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_quick_benchmark_runs_every_scenario(tmp_path):
    from benchmarks.runner import scenario_modules

    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    p = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--workers", "2", "--workdir", str(work),
                        "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert _processes_mentioning(str(work)) == []

    report = json.loads((out / "results.json").read_text())
    expected = [s.name for m in scenario_modules() for s in m.SCENARIOS]
    assert [s["name"] for s in report["scenarios"]] == expected
    for s in report["scenarios"]:
        for side in ("ours", "go"):
            row = s["sides"][side]["rows"][0]
            assert row["value"] > 0 and row["ops"] > 0 and row["server_cpu_s"] >= 0, (s["name"], side, row)
        assert s["ratio"] > 0
    ping = [s for s in report["scenarios"] if s["name"] == "GET /v2/ (wrk)"][0]
    assert ping["sides"]["ceiling"]["median"] > 0    # the bare Klein route
    assert {s["name"] for s in report["aa"]} == {s["name"] for s in report["scenarios"]} - {"GET /v2/ (wrk)"}
    assert all(s["ratio"] > 0 for s in report["aa"])
    markdown = (out / "results.md").read_text()
    assert "| blob push monolithic | MB/s |" in markdown and "peak RSS" in markdown
    assert "manifest GET by tag vs bare Klein" in markdown
    assert set(report["physical"]) == {"sha256_MBps_one_core", "loopback_tcp_MBps", "disk_write_fsync_MBps"}


def test_a_failing_scenario_is_reported_and_the_run_goes_on():
    from benchmarks.core import Scenario, Target
    from benchmarks.runner import derived_rows, markdown, measure

    def broken(bench, target):
        raise ConnectionError("refused")

    s = Scenario("manifest GET by tag (wrk)", "req/s", True, broken, target=4.0)
    targets = {"ours": Target("ours", "distregistry", 1, os.getpid()), "go": Target("go", "go", 2, os.getpid())}
    logged = []
    summary = measure(None, s, targets, 1, 0, logged.append)
    assert summary["error"] == "ConnectionError: refused" and "FAILED" in logged[-1]
    report = {"scenarios": [summary], "aa": [], "derived": derived_rows([summary])}
    assert "| manifest GET by tag (wrk) | req/s | - | - | - | >= 4.0x | **failed** |" in markdown(report)
