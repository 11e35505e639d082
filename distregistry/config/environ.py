"""``REGISTRY_<PATH>`` environment overrides, with registry:2 3.x semantics (configuration/parser.go).

Applied to the raw tree after the YAML is read and before any section parses it, so an
override is validated exactly like the file. Variables are applied in lexical order of their
names (``REGISTRY_STORAGE`` before ``REGISTRY_STORAGE_S3_BUCKET``); a name is split on ``_``
and walked down the schema: struct fields by upper-cased Go field name, map keys
case-insensitively (a new key is lower-cased), list items by index (index == length appends).
The value is YAML (``true``, ``10s``, ``[a, b]``, ``{k: v}``).

Unlike registry:2, sections created by an override are ordinary mappings, so
``REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true`` works without a YAML section (registry:2
panics), and an override that cannot apply is an error naming the variable, not a silent no-op.
"""

import re

from .errors import ConfigError
from .node import keypath, show
from .schema import CONFIGURATION, Any_, List, Map, Scalar, Struct
from .yamlsrc import parse_value

PREFIX = "REGISTRY_"
CONFIG_PATH_VARIABLE = "REGISTRY_CONFIGURATION_PATH"

# Kubernetes injects service-link variables for every service in the namespace
# (<SVC>_PORT=tcp://10.0.0.7:5000, <SVC>_PORT_5000_TCP_ADDR=10.0.0.7, <SVC>_SERVICE_HOST, ...).
# A service named "registry" or "registry-<x>" thus yields REGISTRY_* names that registry:2
# takes for overrides and dies on with an opaque error (distribution-library-image#138).
# Recognised by the name's ending *and* its value's form, they are skipped with a warning
# rather than an error: the pod's owner may not control the other service's name, and no
# configuration key ends so.
_K8S_URL = r"(?:tcp|udp|sctp)://\S+:\d+"
_K8S_IP = r"[0-9.]+|[0-9a-fA-F:]+"
_K8S_LINKS = [
    (re.compile(name + "$"), re.compile(value, re.ASCII))
    for name, value in [
        (r"_PORT", _K8S_URL),
        (r"_PORT_\d+_(?:TCP|UDP|SCTP)", _K8S_URL),
        (r"_PORT_\d+_(?:TCP|UDP|SCTP)_PROTO", r"tcp|udp|sctp"),
        (r"_PORT_\d+_(?:TCP|UDP|SCTP)_PORT", r"\d+"),
        (r"_PORT_\d+_(?:TCP|UDP|SCTP)_ADDR", _K8S_IP),
        (r"_SERVICE_HOST", _K8S_IP),
        (r"_SERVICE_PORT(?:_\w+)?", r"\d+"),
    ]
]


def _is_service_link(name, value):
    return any(n.search(name) and v.fullmatch(value) for n, v in _K8S_LINKS)


class _Unrecognized(Exception):
    """The variable names no configuration key; it is skipped with registry:2's warning."""


def apply_overrides(tree, environ, ctx):
    """*tree* (a dict, left unchanged) with every REGISTRY_* variable of *environ* applied.

    Warnings go to *ctx*, and the key path each variable set to ``ctx.origins``."""
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name == CONFIG_PATH_VARIABLE:
            continue
        value = environ[name]
        if _is_service_link(name, value):
            ctx.warnings.append(
                f"Ignoring environment variable {name}: it looks like a Kubernetes service link "
                f"({value!r}), not a configuration override (set enableServiceLinks: false on the pod)"
            )
            continue
        override = _Override(name, value, ctx)
        segments = name.split("_")[1:]
        try:
            if "" in segments:  # REGISTRY_STORAGE_ or a doubled "_" names no key
                raise _Unrecognized()
            tree = override.descend(tree, CONFIGURATION, segments, ())
        except _Unrecognized:
            ctx.warnings.append(f"Ignoring unrecognized environment variable {name}")
            continue
        ctx.origins[override.target] = name
    return tree


class _Override:
    """One variable being applied; containers on its way are copied, not changed, so a
    variable found unrecognized half-way leaves the tree as it was."""

    def __init__(self, name, payload, ctx):
        self.name = name
        self.payload = payload
        self.ctx = ctx
        self.target = None

    def error(self, path, message):
        return ConfigError(self.ctx.source, keypath(path), message, (self.name,))

    def descend(self, value, schema, segments, path):
        """The new value at *path* once the rest of the variable (*segments*) is applied."""
        if not segments:
            self.target = path
            try:
                return parse_value(self.payload)
            except ValueError as e:
                raise self.error(path, str(e)) from None
        if isinstance(schema, Struct):
            return self._struct(value, schema, segments, path)
        if isinstance(schema, Map):
            return self._map(value, schema, segments, path)
        if isinstance(schema, List):
            return self._list(value, schema.item, segments, path)
        if isinstance(schema, Any_):
            if isinstance(value, list):
                return self._list(value, schema, segments, path)
            return self._map(value, Map(), segments, path)
        assert isinstance(schema, Scalar)
        raise _Unrecognized()  # a scalar has no parts to name

    def _mapping(self, value, path):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"expected a mapping to apply the override to, got {show(value)}")
        return dict(value)

    def _struct(self, value, schema, segments, path):
        if schema.inline and segments[0] == schema.inline[0] and len(segments) > 1:
            return self._struct(value, schema.inline[1], segments[1:], path)
        found = schema.by_go_name(segments[0])
        if found is None:
            raise _Unrecognized()
        key, node = found
        mapping = self._mapping(value, path)
        mapping[key] = self.descend(mapping.get(key), node, segments[1:], path + (key,))
        return mapping

    def _map(self, value, schema, segments, path):
        if schema.shorthand and isinstance(value, str):
            value = {value: {}}
        mapping = self._mapping(value, path)
        wanted = segments[0].lower()
        key = next((k for k in mapping if str(k).lower() == wanted), wanted)
        node = schema.known.get(key, schema.values)
        mapping[key] = self.descend(mapping.get(key), node, segments[1:], path + (key,))
        return mapping

    def _list(self, value, item, segments, path):
        if value is None:
            value = []
        if not isinstance(value, list):
            raise self.error(path, f"expected a list to apply the override to, got {show(value)}")
        index = segments[0]
        if not (index.isascii() and index.isdigit()):
            raise self.error(path, f"{index!r} is not a list index")
        i = int(index)
        if i > len(value):
            raise self.error(
                path, f"index {i} is out of range (the list has {len(value)} items; "
                f"index {len(value)} appends)"
            )
        items = list(value)
        if i == len(items):
            items.append(None)
        items[i] = self.descend(items[i], item, segments[1:], path + (i,))
        return items
