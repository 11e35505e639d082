"""The scenario interface every scenario module implements (see benchmarks/__init__.py)."""

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Measurement:
    value: float                     # in the scenario's unit
    ops: float = 1.0                 # operations done, for server CPU seconds per operation
    rss_mib: Optional[float] = None  # filled in by the runner for peak_rss scenarios


@dataclass
class Scenario:
    name: str
    unit: str                        # "MB/s", "ops/s", "req/s", "s", ...
    higher_is_better: bool
    run: Callable                    # run(bench, target) -> Measurement; one timed measurement
    op: str = "op"                   # what Measurement.ops counts ("GiB", "request", ...)
    target: Optional[float] = None   # required ratio ours/Go: >= when higher_is_better, else <=
    setup: Optional[Callable] = None  # setup(bench, target): once per server, untimed
    peak_rss: bool = False           # report the server's peak RSS during these runs
    sides: tuple = ("ours", "go")    # which servers it runs against
    aa: bool = True                  # part of the A/A (Go vs Go) noise pass


@dataclass
class Target:
    """One server under test: a name for the tables, its port and the pid to measure."""

    name: str
    kind: str                        # "distregistry", "go" or "ceiling"
    port: int
    pid: int
    root: object = None              # storage root (None for the ceiling)
    data: dict = field(default_factory=dict)   # scenarios' per-server state

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"
