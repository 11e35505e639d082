"""Go ``time.Duration`` text, as registry:2 reads durations (``10s``, ``1h30m``, ``1.5s``)."""

import re

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# Go reads a unit as the whole run of non-digit, non-dot characters after the number.
_TERM = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")
_MAX_NS = 2**63 - 1


def parse_duration(text):
    """Seconds (float) for a Go duration string; ``ValueError`` when Go would reject it.

    Accepts a sign, terms like ``1h``, ``1.5s``, ``.5ms`` in any sequence, and a bare ``0``.
    """
    s = text
    negative = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _TERM.match(s, pos)
        whole, frac, unit = m.groups()
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        if unit not in _UNIT_NS:
            raise ValueError(f"missing or unknown unit in duration {text!r}")
        scale = _UNIT_NS[unit]
        total += int(whole or 0) * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        pos = m.end()
    if total > _MAX_NS:
        raise ValueError(f"duration {text!r} overflows")
    return (-total if negative else total) / 1e9
