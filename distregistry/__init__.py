"""distregistry: an OCI Distribution registry daemon on Twisted, drop-in for registry:2."""

__version__ = "0.1.0"
