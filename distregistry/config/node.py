"""Typed reading of the raw configuration tree, with errors that name the key path.

Section classes read values through :class:`Node`; a missing key and a YAML null both read
as "unset" (Go's zero value), so the section's default applies.
"""

from .duration import parse_duration
from .errors import ConfigError
from .yamlsrc import scalar_text

# Bare integers under a millisecond are almost always seconds written without a unit.
_SUSPICIOUS_NS = 1_000_000


def show(value):
    """A short rendering of a raw value for error messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return scalar_text(value)
    return repr(value)


def keypath(path):
    return ".".join(str(p) for p in path)


class Context:
    """What all nodes of one parse share: the source name, warnings, and env origins."""

    def __init__(self, source):
        self.source = source
        self.warnings = []
        # key path tuple -> name of the REGISTRY_* variable that set the value there
        self.origins = {}

    def variables(self, path, below=False):
        """Variables that set *path* or a parent of it (or, with *below*, a child)."""
        n = len(path)
        return tuple(sorted({
            var for p, var in self.origins.items()
            if p == path[:len(p)] or (below and p[:n] == path)
        }))

    def error(self, path, message, below=False):
        return ConfigError(self.source, keypath(path), message, self.variables(path, below))

    def warn(self, path, message):
        where = f"{keypath(path)}: " if path else ""
        self.warnings.append(f"{self.source}: {where}{message}")


class Node:
    """The raw value at one key path (None when absent)."""

    __slots__ = ("ctx", "path", "value")

    def __init__(self, ctx, path, value):
        self.ctx = ctx
        self.path = path
        self.value = value

    @property
    def keypath(self):
        return keypath(self.path)

    def __getitem__(self, key):
        return Node(self.ctx, self.path + (key,), self.as_mapping().get(key))

    def error(self, message, below=False):
        """A ConfigError for this key (to raise); *below* also blames overrides of its children."""
        return self.ctx.error(self.path, message, below)

    def warn(self, message):
        self.ctx.warn(self.path, message)

    def not_supported(self):
        return self.error("not supported yet")

    def _expected(self, what):
        return self.error(f"expected {what}, got {show(self.value)}")

    def as_mapping(self):
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            raise self._expected("a mapping")
        return self.value

    def with_shorthand(self):
        """This node with registry:2's bare-string form expanded: ``storage: inmemory``
        means ``storage: {inmemory: {}}``."""
        if isinstance(self.value, str):
            return Node(self.ctx, self.path, {self.value: {}})
        return self

    def as_list(self):
        """The items as nodes."""
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise self._expected("a list")
        return [Node(self.ctx, self.path + (i,), v) for i, v in enumerate(self.value)]

    def as_bool(self, default):
        if self.value is None:
            return default
        if not isinstance(self.value, bool):
            raise self._expected("true or false")
        return self.value

    def as_str(self, default):
        """A string; numbers read as written, as a Go string field reads them."""
        v = self.value
        if v is None:
            return default
        if isinstance(v, str):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return scalar_text(v)
        raise self._expected("a string")

    def as_choice(self, choices, default):
        """A case-insensitive choice among *choices*, returned lower-cased; "" reads as unset."""
        v = self.as_str(default) or default
        if v.lower() not in choices:
            raise self.error(f"expected one of {', '.join(choices)}, got {show(self.value)}")
        return v.lower()

    def as_int(self, default, minimum=None):
        v = self.value
        if v is None:
            return default
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._expected("an integer")
        if minimum is not None and v < minimum:
            raise self.error(f"must be at least {minimum}, got {show(v)}")
        return int(v)

    def as_duration(self, default):
        """Seconds (float): a Go duration string, or a bare integer of nanoseconds."""
        v = self.value
        if v is None:
            return default
        if isinstance(v, str):
            try:
                seconds = parse_duration(v)
            except ValueError:
                raise self._expected('a duration such as "168h"') from None
        elif isinstance(v, int) and not isinstance(v, bool):
            if 0 < v < _SUSPICIOUS_NS:
                self.warn(f'bare integer {show(v)} is read as nanoseconds; write "{show(v)}s" for seconds')
            seconds = v / 1e9
        else:
            raise self._expected('a duration such as "168h"')
        if seconds < 0:
            raise self.error(f"must not be negative, got {show(v)}")
        return seconds
