"""End-to-end test harness for distregistry.

- ``support.daemon``: ``Daemon`` (run distregistry or the Go registry on 127.0.0.1:<free port>),
  ``DaemonSet`` (start several, stop all by PID), ``free_port``, ``Response``.
- ``support.images``: deterministic OCI image layouts (``build_image``, ``build_index``),
  ``summarize_layout`` (walk + re-hash a layout), ``Skopeo`` (hermetic skopeo wrapper).
- ``support.goregistry``: Go-registry extras (``garbage_collect``) and on-disk layout paths
  (``layer_link``, ``revision_link``, ``tag_current_link``, ``read_link`` ...).

Fixtures (tests/conftest.py, end section): ``daemons``, ``registry_factory``, ``distregistry``,
``goregistry``, ``registry`` (indirect-parametrise with ``KIND_PARAMS``), ``module_daemons``,
``skopeo``, ``e2e_images``.

Import as ``from support import ...`` (tests/ is on sys.path when it has no __init__.py) or as
``tests.support``; test modules use ``support_import()``-style try/except for both.
"""

from __future__ import annotations

import pytest

from .goregistry import requires_go

#: Measurements reported at the end of the run (see ``pytest_terminal_summary`` in conftest).
MEASUREMENTS: list[str] = []


def report(line: str) -> None:
    """Record a measured number for the terminal summary (and print it for ``-s`` runs)."""
    MEASUREMENTS.append(line)
    print(line)


#: Parametrisation for tests that first prove the harness against the Go reference, then run
#: the same code against distregistry.  ``-m distregistry`` / ``-m "not distregistry"`` select.
KIND_PARAMS = [
    pytest.param("go", id="go", marks=[pytest.mark.goregistry, requires_go]),
    pytest.param("distregistry", id="distregistry", marks=pytest.mark.distregistry),
]
