"""registry:2's ``config.yml`` (``version: 0.1``) with ``REGISTRY_*`` environment overrides,
parsed into one typed object per section. Nothing else in distregistry reads the file or the
environment for configuration."""

from .config import Config
from .errors import ConfigError

__all__ = ["Config", "ConfigError"]
