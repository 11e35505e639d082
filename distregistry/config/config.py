"""The whole configuration: read once at start-up, then passed around as typed sections."""

import copy
import os
from importlib import resources

import attr

from .audit import audit
from .auth import parse_auth
from .environ import CONFIG_PATH_VARIABLE, apply_overrides
from .errors import ConfigError
from .http import HTTPConfig
from .listing import CatalogConfig, TagsConfig
from .log import LogConfig
from .node import Context, Node, show
from .notifications import NotificationsConfig
from .redis import RedisConfig
from .schema import CONFIGURATION
from .storage import StorageConfig
from .tokenserver import TokenServerConfig
from .validation import ValidationConfig
from .yamlsrc import load_yaml, scalar_text

VERSION = "0.1"
EMBEDDED_SOURCE = "<embedded default>"

# Section name -> parser of the whole tree's root Node into that section's object. A section
# gets support by adding its class here, an attribute below, and dropping it from
# schema.NOT_SUPPORTED.
SECTIONS = {
    "log": LogConfig.parse,
    "storage": StorageConfig.parse,
    "auth": parse_auth,
    "http": HTTPConfig.parse,
    "catalog": CatalogConfig.parse,
    "tags": TagsConfig.parse,
    "validation": ValidationConfig.parse,
    "notifications": NotificationsConfig.parse,
    "redis": RedisConfig.parse,
    "tokenserver": TokenServerConfig.parse,
}


@attr.s(frozen=True, slots=True)
class Config:
    source = attr.ib()  # the file path, or "<embedded default>"
    warnings = attr.ib()  # list of str for the caller to log
    log = attr.ib()  # LogConfig
    storage = attr.ib()  # StorageConfig
    auth = attr.ib()  # None: no access control
    http = attr.ib()  # HTTPConfig
    catalog = attr.ib()  # CatalogConfig
    tags = attr.ib()  # TagsConfig
    validation = attr.ib()  # ValidationConfig
    notifications = attr.ib()  # NotificationsConfig
    redis = attr.ib()  # RedisConfig, or None when the section is absent
    tokenserver = attr.ib()  # TokenServerConfig, or None

    @classmethod
    def load(cls, path=None, environ=None):
        """Read *path*, else ``$REGISTRY_CONFIGURATION_PATH``, else the embedded default,
        and apply the ``REGISTRY_*`` overrides of *environ* (default ``os.environ``)."""
        if environ is None:
            environ = os.environ
        path = path or environ.get(CONFIG_PATH_VARIABLE)
        if not path:
            text = resources.files(__package__).joinpath("default.yml").read_text("utf-8")
            return cls.parse(text, EMBEDDED_SOURCE, environ)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(path, None, f"cannot read the configuration: {e}") from None
        return cls.parse(text, path, environ)

    @classmethod
    def parse(cls, text_or_dict, source="<string>", environ=None):
        """Parse YAML text (or an already-loaded dict) from *source*; *environ* defaults to
        no overrides."""
        ctx = Context(source)
        if isinstance(text_or_dict, dict):
            tree = copy.deepcopy(text_or_dict)
        else:
            tree, warnings = load_yaml(text_or_dict, source)
            ctx.warnings.extend(warnings)
        root = Node(ctx, (), tree)
        root.as_mapping()
        _check_version(root["version"])
        tree = apply_overrides(tree or {}, environ or {}, ctx)
        audit(tree, CONFIGURATION, ctx)
        root = Node(ctx, (), tree)
        sections = {name: parse(root) for name, parse in SECTIONS.items()}
        return cls(source=source, warnings=ctx.warnings, **sections)


def _check_version(node):
    # Read from the file before any override, as registry:2 does.
    if node.value is None:
        raise node.error(f'missing; expected "{VERSION}"')
    if isinstance(node.value, (dict, list, bool)) or scalar_text(node.value) != VERSION:
        raise node.error(f'unsupported version {show(node.value)}; expected "{VERSION}"')
