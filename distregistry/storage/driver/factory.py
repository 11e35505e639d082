"""Build a storage driver from its config name and (already validated) parameters."""


def _filesystem(parameters, reactor):
    from distregistry.storage.driver.filesystem import FilesystemDriver

    return FilesystemDriver(parameters["rootdirectory"], parameters["maxthreads"], reactor=reactor)


def _inmemory(parameters, reactor):
    from distregistry.storage.driver.inmemory import InMemoryDriver

    return InMemoryDriver(reactor=reactor)


# Imported on demand, so a cloud driver's client library is needed only where it is used.
_BUILDERS = {
    "filesystem": _filesystem,
    "inmemory": _inmemory,
}


def create(name, parameters, reactor=None):
    """IStorageDriver for the ``storage.<name>`` section; ValueError for an unknown name."""
    try:
        build = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown storage driver {name!r} (known: {', '.join(sorted(_BUILDERS))})") from None
    return build(parameters or {}, reactor)
