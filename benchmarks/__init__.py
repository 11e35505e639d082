"""Side-by-side benchmark of distregistry against Debian's docker-registry (Go 2.8.2).

``python -m benchmarks`` (or ``make bench``) runs the whole suite; ``--quick`` is the CI
smoke; ``--help`` lists the options. See runner.py for the method.

Adding scenarios: any module in this package with a ``SCENARIOS`` list of
:class:`benchmarks.core.Scenario` is picked up (so is one named with ``--module``). A
scenario's ``run(bench, target)`` does one timed measurement against one server
(``target.port``, ``target.root``, ``target.data`` for its own state) and returns a
:class:`benchmarks.core.Measurement`; ``setup(bench, target)`` runs once per server,
untimed. ``bench.sizes`` holds the full or ``--quick`` sizes, ``bench.unique()`` a fresh
number for new content.
"""
