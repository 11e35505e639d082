"""Check the raw tree against registry:2's schema: warn on unknown keys, refuse what this
build does not support yet.

registry:2 ignores unknown keys silently, so a typo (``storage.delete.enable``) quietly does
nothing; here it is at least a warning.
"""

from .node import keypath
from .schema import NOT_SUPPORTED, REMOVED, List, Map, Struct


def is_zero(value):
    """True for Go's zero value: null, false, 0, "", or containers holding only zero values."""
    if isinstance(value, dict):
        return all(is_zero(v) for v in value.values())
    if isinstance(value, list):
        return all(is_zero(v) for v in value)
    return value is None or value is False or value == 0 or value == ""


def audit(tree, schema, ctx, path=()):
    """Walk *tree*; add warnings to *ctx*, raise ConfigError for a key not supported yet.

    Values of the wrong type are left alone: the section reading them reports those.
    """
    if isinstance(schema, Struct):
        if not isinstance(tree, dict):
            return
        fields = schema.yaml_fields()
        for key, value in tree.items():
            child = path + (key,)
            if key not in fields:
                ctx.warn(child, REMOVED.get(keypath(child), "unknown configuration key, ignored"))
                continue
            _visit(value, fields[key], ctx, child)
    elif isinstance(schema, Map):
        if schema.shorthand and isinstance(tree, str):
            return
        if not isinstance(tree, dict):
            return
        for key, value in tree.items():
            child = path + (key,)
            if schema.closed and key not in schema.known:
                ctx.warn(child, "unknown configuration key, ignored")
                continue
            _visit(value, schema.known.get(key, schema.values), ctx, child)
    elif isinstance(schema, List):
        if isinstance(tree, list):
            for i, value in enumerate(tree):
                audit(value, schema.item, ctx, path + (i,))


def _visit(value, schema, ctx, path):
    if keypath(path) in NOT_SUPPORTED and not is_zero(value):
        raise ctx.error(path, "not supported yet", below=True)
    audit(value, schema, ctx, path)
