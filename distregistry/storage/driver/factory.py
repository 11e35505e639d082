"""Build a storage driver from its config name and (already validated) parameters."""


def _filesystem(parameters, reactor, managed):
    from distregistry.storage.driver.filesystem import FilesystemDriver

    return FilesystemDriver(parameters["rootdirectory"], parameters["maxthreads"], reactor=reactor, managed=managed)


def _inmemory(parameters, reactor, managed):
    from distregistry.storage.driver.inmemory import InMemoryDriver

    return InMemoryDriver(reactor=reactor)


def _s3(parameters, reactor, managed):
    from distregistry.storage.driver.s3 import S3Driver

    return S3Driver(parameters, reactor=reactor)


def _gcs(parameters, reactor, managed):
    import os

    from distregistry.storage.driver.gcs import from_parameters

    return from_parameters(parameters, reactor, os.environ)


def _azure(parameters, reactor, managed):
    from distregistry.storage.driver.azure import AzureDriver

    return AzureDriver(**parameters, reactor=reactor)


# Imported on demand, so a cloud driver's client library is needed only where it is used.
_BUILDERS = {
    "filesystem": _filesystem,
    "inmemory": _inmemory,
    "s3": _s3,
    "s3aws": _s3,
    "gcs": _gcs,
    "azure": _azure,
}


def create(name, parameters, reactor=None, managed=False):
    """IStorageDriver for the ``storage.<name>`` section; ValueError for an unknown name.

    *managed*: the caller promises to ``close()`` the driver (the daemon does, after draining);
    otherwise a driver holding threads closes itself when the reactor shuts down."""
    try:
        build = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown storage driver {name!r} (known: {', '.join(sorted(_BUILDERS))})") from None
    return build(parameters or {}, reactor, managed)
