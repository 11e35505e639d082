"""Runs the scenarios against distregistry and Debian's docker-registry (Go) side by side.

Each scenario runs its servers interleaved over several rounds (A B, then B A, ...). Each
round starts only once the machine was >= 90 % idle for 2 s, or is tagged BUSY after the
idle timeout. For every measurement the runner records the scenario's value (wall clock)
and the server's CPU seconds (utime+stime from /proc, which competing load barely
changes), per operation. Medians go into the ratio table (stdout, JSON and Markdown).
"""

import argparse
import datetime
import importlib
import json
import os
import pkgutil
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchmarks
from benchmarks import machine
from benchmarks.core import Target

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from tests.support.daemon import Daemon, free_port  # noqa: E402  (the e2e harness, reused)
from tests.support.images import Skopeo, build_image, files, layer  # noqa: E402

FULL = dict(blob=256 << 20, chunk=16 << 20, duration=2, wrk_threads=2, wrk_connections=64, listing=10_000,
            layers=5, layer=40 << 20, physical=512 << 20)
QUICK = dict(blob=4 << 20, chunk=1 << 20, duration=1, wrk_threads=1, wrk_connections=8, listing=30,
             layers=2, layer=256 << 10, physical=16 << 20)
SECRET = "distregistry-benchmark-secret"


def scenario_modules(extra=()):
    """Every module of this package that defines SCENARIOS (e.g. benchmarks/gc.py), then
    the ``--module`` ones: the hook for more scenario modules."""
    names = [f"benchmarks.{m.name}" for m in pkgutil.iter_modules(benchmarks.__path__)
             if not m.name.startswith("_")]
    modules = []
    for name in sorted(names, key=lambda n: (n != "benchmarks.scenarios", n)) + list(extra):
        module = importlib.import_module(name)
        if hasattr(module, "SCENARIOS"):
            modules.append(module)
    return modules


class Bench:
    """What scenarios share: sizes, the work directory, test data, unique numbers."""

    def __init__(self, workdir, sizes, quick):
        self.workdir = str(workdir)
        self.sizes = sizes
        self.quick = quick
        self._counter = int(time.time() * 1000)
        self.blob_file = os.path.join(self.workdir, "blob.bin")
        with open(self.blob_file, "wb") as f:
            for _ in range(sizes["blob"] >> 20):
                f.write(os.urandom(1 << 20))
        self.skopeo = Skopeo(Path(workdir) / "skopeo")
        specs = [layer(*files(f"l{i}", 1, sizes["layer"])) for i in range(sizes["layers"])]
        self.image = build_image(Path(workdir) / "image", "latest", specs, seed="bench")

    def unique(self):
        self._counter += 1
        return self._counter


class Servers:
    """Starts and stops every server of the run; stop() is called on any exit."""

    def __init__(self, workdir, workers):
        self.workdir = Path(workdir)
        self.workers = workers
        self.daemons = []
        self.ceiling = None

    def start_registry(self, name, kind):
        extra = {"http": {"secret": SECRET}, "log": {"level": "info"}}
        if kind == "distregistry" and self.workers > 1:
            extra["http"]["workers"] = self.workers
        d = Daemon(kind, root=self.workdir / name / "data", workdir=self.workdir / name, extra_config=extra,
                   name=name)
        self.daemons.append(d)
        d.start()
        return Target(name, kind, d.port, d.pid, root=d.root)

    def start_ceiling(self):
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self.ceiling = subprocess.Popen([sys.executable, "-m", "benchmarks.ceiling", str(port), str(self.workers)],
                                        env=env, stdout=subprocess.DEVNULL, cwd=str(self.workdir))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        return Target("ceiling", "ceiling", port, self.ceiling.pid)

    def stop(self):
        for d in self.daemons:
            d.stop()
        if self.ceiling is not None:
            self.ceiling.terminate()
            try:
                self.ceiling.wait(10)
            except subprocess.TimeoutExpired:
                self.ceiling.kill()
                self.ceiling.wait()


def _median(values):
    return statistics.median(values) if values else None


def run_scenario(bench, scenario, targets, rounds, idle_timeout, log):
    """{side: [measurement dicts]} for one scenario, rounds interleaved."""
    sides = [targets[s] for s in scenario.sides if s in targets]
    for t in sides:
        if scenario.setup:
            scenario.setup(bench, t)
    results = {t.name: [] for t in sides}
    for r in range(rounds):
        if idle_timeout > 0:
            idle, ok = machine.wait_idle(idle_timeout)
            tag = f"idle={idle:.0%}" if ok else f"BUSY({idle:.0%})"
        else:
            idle, tag = None, "ungated"
        order = sides if r % 2 == 0 else sides[::-1]
        for t in order:
            if scenario.peak_rss:
                machine.reset_peak_rss(t.pid)
            cpu0, t0 = machine.cpu_seconds(t.pid), time.perf_counter()
            m = scenario.run(bench, t)
            wall, cpu = time.perf_counter() - t0, machine.cpu_seconds(t.pid) - cpu0
            row = {"round": r, "value": m.value, "wall_s": wall, "server_cpu_s": cpu, "ops": m.ops,
                   "cpu_per_op": cpu / m.ops if m.ops else None, "idle": idle, "tag": tag}
            if scenario.peak_rss:
                row["peak_rss_mib"] = machine.peak_rss_mib(t.pid)
            results[t.name].append(row)
            log(f"  {scenario.name} [{t.name}] round {r}: {m.value:.4g} {scenario.unit}, "
                f"server cpu {cpu:.3f}s/{m.ops:.4g} {scenario.op}, {tag}")
    return results


def summarize(scenario, results, a="ours", b="go"):
    def side(rows):
        return {"median": _median([r["value"] for r in rows]),
                "cpu_per_op": _median([r["cpu_per_op"] for r in rows if r["cpu_per_op"] is not None]),
                "wall_s": _median([r["wall_s"] for r in rows]),
                "peak_rss_mib": max((r["peak_rss_mib"] for r in rows if "peak_rss_mib" in r), default=None),
                "busy_rounds": sum(r["tag"].startswith("BUSY") for r in rows), "rows": rows}

    out = {"name": scenario.name, "unit": scenario.unit, "op": scenario.op,
           "higher_is_better": scenario.higher_is_better, "target": scenario.target,
           "sides": {name: side(rows) for name, rows in results.items()}}
    sa, sb = out["sides"].get(a), out["sides"].get(b)
    if sa and sb and sb["median"]:
        out["ratio"] = sa["median"] / sb["median"]
        if sa["cpu_per_op"] and sb["cpu_per_op"]:
            out["cpu_ratio"] = sa["cpu_per_op"] / sb["cpu_per_op"]
        if scenario.target is not None:
            out["met"] = (out["ratio"] >= scenario.target if scenario.higher_is_better
                          else out["ratio"] <= scenario.target)
    return out


def measure(bench, scenario, targets, rounds, idle_timeout, log, a="ours"):
    """summarize(run_scenario(...)); a scenario that fails is reported as such and the run
    goes on with the next one."""
    try:
        return summarize(scenario, run_scenario(bench, scenario, targets, rounds, idle_timeout, log), a=a)
    except Exception as e:
        log(f"  {scenario.name} FAILED: {type(e).__name__}: {e}")
        return {"name": scenario.name, "unit": scenario.unit, "higher_is_better": scenario.higher_is_better,
                "target": scenario.target, "sides": {}, "error": f"{type(e).__name__}: {str(e)[:500]}"}


def _fmt(v, digits=3):
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"


def markdown(report):
    lines = ["| scenario | unit | distregistry | Go 2.8.2 | ours/Go | target | met | server CPU s/op ours | Go "
             "| CPU ours/Go | A/A Go/Go | busy rounds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    aa = {s["name"]: s.get("ratio") for s in report.get("aa", [])}
    for s in report["scenarios"]:
        ours, go = s["sides"].get("ours", {}), s["sides"].get("go", {})
        target = "" if s["target"] is None else (">= " if s["higher_is_better"] else "<= ") + f"{s['target']}x"
        met = "**failed**" if "error" in s else {True: "yes", False: "**no**"}.get(s.get("met"), "")
        busy = sum(v["busy_rounds"] for v in s["sides"].values())
        lines.append(f"| {s['name']} | {s['unit']} | {_fmt(ours.get('median'))} | {_fmt(go.get('median'))} "
                     f"| {_fmt(s.get('ratio'))} | {target} | {met} | {_fmt(ours.get('cpu_per_op'))} "
                     f"| {_fmt(go.get('cpu_per_op'))} | {_fmt(s.get('cpu_ratio'))} | {_fmt(aa.get(s['name']))} "
                     f"| {busy} |")
    for extra in report["derived"]:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def derived_rows(scenarios):
    """Rows computed across scenarios: peak RSS of the pushes, manifest GET vs the Klein ceiling."""
    rows = []
    rss = {side: max((s["sides"][side]["peak_rss_mib"] or 0) for s in scenarios if s["sides"].get(side)
                     and s["sides"][side]["peak_rss_mib"] is not None) for side in ("ours", "go")
           if any(s["sides"].get(side, {}).get("peak_rss_mib") for s in scenarios)}
    if len(rss) == 2 and rss["go"]:
        ratio = rss["ours"] / rss["go"]
        rows.append(f"| peak RSS during the blob pushes | MiB | {_fmt(rss['ours'])} | {_fmt(rss['go'])} "
                    f"| {_fmt(ratio)} | <= 1.5x | {'yes' if ratio <= 1.5 else '**no**'} | | | | | |")
    by_name = {s["name"]: s for s in scenarios}
    get, ping = by_name.get("manifest GET by tag (wrk)"), by_name.get("GET /v2/ (wrk)")
    if get and ping and "ours" in get["sides"] and ping["sides"].get("ceiling", {}).get("median"):
        ratio = get["sides"]["ours"]["median"] / ping["sides"]["ceiling"]["median"]
        rows.append(f"| manifest GET by tag vs bare Klein GET /v2/ | req/s | "
                    f"{_fmt(get['sides']['ours']['median'])} | (Klein {_fmt(ping['sides']['ceiling']['median'])}) "
                    f"| {_fmt(ratio)} | >= 0.5x | {'yes' if ratio >= 0.5 else '**no**'} | | | | | |")
    return rows


def physical(bench, log):
    size = bench.sizes["physical"]
    refs = {"sha256_MBps_one_core": machine.sha256_mbps(size), "loopback_tcp_MBps": machine.loopback_mbps(size),
            "disk_write_fsync_MBps": machine.disk_write_mbps(bench.workdir, size)}
    log("physical references: " + ", ".join(f"{k} {v:.0f}" for k, v in refs.items()))
    return refs


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 1 round, no idle gate: a smoke test")
    p.add_argument("--rounds", type=int, help="rounds per scenario (default 3; --quick: 1)")
    p.add_argument("--aa-rounds", type=int, help="rounds of the A/A (Go vs Go) pass (default 1; 0: skip)")
    p.add_argument("--workers", type=int, default=1, help="distregistry http.workers (default 1, its default)")
    p.add_argument("--only", action="append", default=[], help="run scenarios whose name contains this")
    p.add_argument("--module", action="append", default=[], help="extra module defining SCENARIOS")
    p.add_argument("--idle-timeout", type=float, help="s to wait for an idle machine before a BUSY round "
                                                      "(default 6; --quick: 0 = no gate)")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"),
                   help="directory for results.json and results.md")
    p.add_argument("--workdir", help="scratch directory (default: a new temporary one, removed afterwards)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or (1 if args.quick else 3)
    # One A/A round keeps the full run under 10 minutes; its spread is what one round shows.
    aa_rounds = args.aa_rounds if args.aa_rounds is not None else 1
    idle_timeout = args.idle_timeout if args.idle_timeout is not None else (0 if args.quick else 6)
    scenarios = [s for m in scenario_modules(args.module) for s in m.SCENARIOS
                 if not args.only or any(o in s.name for o in args.only)]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="distregistry-bench-"))
    started = time.monotonic()

    def log(msg):
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    # SIGTERM ends the run like Ctrl-C: through the finally below, which stops every server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers = Servers(workdir, args.workers)
    try:
        bench = Bench(workdir, sizes, args.quick)
        refs = physical(bench, log)
        targets = {"ours": servers.start_registry("ours", "distregistry"), "go": servers.start_registry("go", "go")}
        if any("ceiling" in s.sides for s in scenarios):
            targets["ceiling"] = servers.start_ceiling()
        log("servers: " + ", ".join(f"{t.name} pid {t.pid} port {t.port}" for t in targets.values()))
        summaries = [measure(bench, s, targets, rounds, idle_timeout, log) for s in scenarios]
        aa = []
        if aa_rounds > 0:
            # A/A: the same scenarios against a second Go registry, to show the noise.
            go2 = servers.start_registry("go2", "go")
            aa_targets = {"ours": go2, "go": targets["go"]}   # scenarios name their sides ours/go
            aa = [measure(bench, s, aa_targets, aa_rounds, idle_timeout, log, a="go2") for s in scenarios if s.aa]
        report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "quick": args.quick, "rounds": rounds, "aa_rounds": aa_rounds, "workers": args.workers,
                  "cpus": os.cpu_count(), "physical": refs, "scenarios": summaries, "aa": aa,
                  "derived": derived_rows(summaries), "elapsed_s": time.monotonic() - started}
    finally:
        servers.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(report)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    header = (f"distregistry vs docker-registry 2.8.2, {report['date']}, {rounds} rounds (A/A: {aa_rounds}), "
              f"workers={args.workers}, {report['cpus']} CPUs; physical: "
              + ", ".join(f"{k} {v:.0f}" for k, v in refs.items()) + "\n\n")
    (out / "results.md").write_text(header + table)
    print(header + table)
    log(f"done in {report['elapsed_s']:.0f}s; wrote {out}/results.json and results.md")
    return report
