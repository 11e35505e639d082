"""The one error type of the configuration package."""


class ConfigError(Exception):
    """A configuration problem, naming where it is.

    ``str()`` reads ``<source>[: line N]: <keypath>: <message>[ (from REGISTRY_X)]``, e.g.
    ``config.yml: storage.maintenance.uploadpurging.age: expected a duration such as "168h", got 'abc'``.
    *keypath* is dotted with list indexes as numbers (``log.hooks.0.type``); it is empty for
    problems of the file as a whole, which name the *line* instead. *variables* are the
    ``REGISTRY_*`` environment overrides that set the offending value.
    """

    def __init__(self, source, keypath, message, variables=(), line=None):
        self.source = source
        self.keypath = keypath or ""
        self.message = message
        self.variables = tuple(variables)
        self.line = line
        super().__init__(str(self))

    def __str__(self):
        parts = [self.source]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.keypath:
            parts.append(self.keypath)
        text = ": ".join(parts + [self.message])
        if self.variables:
            text += f" (from {', '.join(self.variables)})"
        return text
