"""The effective configuration as plain data: every section's typed values (defaults and
``REGISTRY_*`` overrides applied), for ``distregistry config check`` to print (secrets
masked) and for a SIGHUP reload to see which keys changed."""

import attr

MASK = "*****"
# Attribute names whose values are credentials, in any section.
SECRET_NAMES = frozenset({
    "secret", "password", "sentinelpassword", "secretkey", "accesskey", "accountkey",
    "private_key", "privatekey", "connectionstring", "credentials",
})
# Header names whose values are credentials (notification endpoints, http health checks).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _plain(value):
    if attr.has(type(value)):
        return {a.name: _plain(getattr(value, a.name)) for a in attr.fields(type(value))}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return repr(value)


def effective(config, sections):
    """``{section: {attribute: value}}`` for the *sections* names of *config*."""
    return {name: _plain(getattr(config, name)) for name in sections}


def mask(tree):
    """A copy of *tree* with credential values replaced by MASK (empty ones left empty)."""
    if isinstance(tree, list):
        return [mask(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    out = {}
    for key, value in tree.items():
        if key.lower() in SECRET_NAMES and value not in (None, "", {}, []):
            out[key] = MASK
        elif key == "headers" and isinstance(value, dict):
            out[key] = {h: MASK if h.lower() in SECRET_HEADERS else v for h, v in value.items()}
        else:
            out[key] = mask(value)
    return out


def flatten(tree, prefix=""):
    """``{"a.b.c": value}``; lists are leaves (a list changes as a whole)."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out
