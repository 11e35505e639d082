"""twistd plugin: ``twistd -n distregistry -c config.yml``.

Kept import-light: twistd imports every plugin module just to list them.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "Path to config.yml (default: $REGISTRY_CONFIGURATION_PATH, else the embedded default)"],
    ]

    def postOptions(self):
        from distregistry import logs
        from distregistry.config import ConfigError
        from distregistry.service import load_config

        try:
            self.loaded = load_config(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        # twistd starts its logger after makeService; naming our observer factory as its
        # --logger makes log.level/formatter/fields apply to everything twistd and we log.
        if getattr(self, "parent", None) is not None:
            logs.configure(self.loaded.log)
            self.parent["logger"] = "distregistry.logs.configured_observer"


@implementer(IServiceMaker, IPlugin)
class _ServiceMaker:
    tapname = "distregistry"
    description = "OCI Distribution registry (drop-in for registry:2)"
    options = Options

    def makeService(self, options):
        import sys

        from twisted.internet import reactor

        from distregistry.api.streaming import release_free_memory
        from distregistry.config import ConfigError
        from distregistry.service import make_service

        try:
            service = make_service(options.loaded)
        except ConfigError as e:
            # Files named by the config (TLS certificates, token keys) are read here.
            print(f"distregistry: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        # What start-up freed (module loading, config parsing) would stay resident (~1 MiB).
        reactor.callWhenRunning(release_free_memory)
        return service


serviceMaker = _ServiceMaker()
