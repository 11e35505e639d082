"""registry:2's configuration tree as its Go types shape it (configuration/configuration.go, 3.x).

This is a table of facts, read by the environment overrides (which segment of
``REGISTRY_A_B_C`` names what) and by the audit (unknown keys, keys not supported yet). The
section classes read the values.

Node kinds follow the Go types because the override rules do: a ``Struct`` field is named by
its upper-cased Go field name (usually the YAML key upper-cased; ``Field(go=...)`` where not);
a ``Map`` takes any key; a ``List`` takes numeric indexes; ``SCALAR`` is a typed leaf; ``ANY``
is Go's ``any`` (a YAML value that an override may turn into a mapping).
"""

import attr


@attr.s(frozen=True, slots=True)
class Scalar:
    pass


@attr.s(frozen=True, slots=True)
class Any_:
    pass


SCALAR = Scalar()
ANY = Any_()


@attr.s(frozen=True, slots=True)
class Field:
    node = attr.ib()
    go = attr.ib(default=None)  # upper-cased Go field name, when it is not the YAML key's


@attr.s(frozen=True, slots=True)
class Struct:
    fields = attr.ib()  # YAML key -> node or Field
    # A `yaml:",inline"` struct field: (its upper-cased Go name, Struct); its keys sit in this
    # mapping, and overrides may name them with or without the Go name (REGISTRY_REDIS_ADDRS
    # and REGISTRY_REDIS_OPTIONS_ADDRS).
    inline = attr.ib(default=None)

    def yaml_fields(self):
        """YAML key -> node, inline fields included."""
        fields = {k: f.node if isinstance(f, Field) else f for k, f in self.fields.items()}
        if self.inline:
            fields.update(self.inline[1].yaml_fields())
        return fields

    def by_go_name(self, segment):
        """(YAML key, node) of the field whose upper-cased Go name is *segment*, else None."""
        for key, f in self.fields.items():
            if (f.go if isinstance(f, Field) and f.go else key.upper()) == segment:
                return key, f.node if isinstance(f, Field) else f
        if self.inline:
            return self.inline[1].by_go_name(segment)
        return None


@attr.s(frozen=True, slots=True)
class Map:
    values = attr.ib(default=ANY)  # node of any key not in *known*
    known = attr.ib(factory=dict)  # keys registry:2 reads -> node
    closed = attr.ib(default=False)  # keys outside *known* are unknown (warned)
    shorthand = attr.ib(default=False)  # a bare string "x" means {x: {}} (storage, auth)


@attr.s(frozen=True, slots=True)
class List:
    item = attr.ib()


def params(*names, **nested):
    """Go ``Parameters`` (map[string]any) of which registry:2 reads these keys."""
    return Map(known={**dict.fromkeys(names, ANY), **nested}, closed=True)


def struct(*names, **nodes):
    """A Struct of scalar fields *names* plus the given nodes."""
    return Struct({**dict.fromkeys(names, SCALAR), **nodes})


_STRINGS = List(SCALAR)
_HEADERS = Map(List(SCALAR))

_LOG = struct(
    "level", "formatter", "reportcaller",
    accesslog=struct("disabled"),
    fields=Map(),
    hooks=List(struct(
        "disabled", "type",
        levels=_STRINGS,
        options=Field(
            Struct({"from": SCALAR, "to": _STRINGS, "smtp": struct("addr", "username", "password", "insecure")}),
            go="MAILOPTIONS",
        ),
    )),
)

_STORAGE = Map(
    values=Map(),  # a driver's parameters
    known={
        "maintenance": params(
            uploadpurging=params("enabled", "age", "interval", "dryrun"),
            readonly=params("enabled"),
            gc=params("enabled", "interval", "graceperiod", "dryrun"),   # distregistry's own
        ),
        "cache": params("blobdescriptor", "blobdescriptorsize", "layerinfo"),
        "delete": params("enabled"),
        "redirect": params("disable"),
        "tag": params("concurrencylimit"),
        "filesystem": params("rootdirectory", "maxthreads"),
        "inmemory": params(),
        **dict.fromkeys(("s3", "s3aws"), params(
            "accesskey", "secretkey", "sessiontoken", "region", "regionendpoint", "forcepathstyle", "bucket",
            "encrypt", "keyid", "secure", "skipverify", "v4auth", "chunksize", "multipartcopychunksize",
            "multipartcopymaxconcurrency", "multipartcopythresholdsize", "rootdirectory", "storageclass",
            "objectacl", "loglevel", "useragent", "usedualstack", "accelerate", "usefipsendpoint",
            "redirectendpoint",
        )),
        "gcs": params("bucket", "keyfile", "rootdirectory", "chunksize", "maxconcurrency", "useragent",
                      credentials=Map()),
        "azure": params("accountname", "accountkey", "container", "realm", "serviceurl", "rootdirectory",
                        "connectionstring", "credentials", "max_retries", "retry_delay", "skipverify",
                        "useragent"),
    },
    shorthand=True,
)

_TLS = struct(
    "certificate", "key", "clientauth", "minimumtls",
    clientcas=_STRINGS,
    ciphersuites=_STRINGS,
    letsencrypt=struct("cachefile", "email", "directoryurl", hosts=_STRINGS),
)

_HTTP = struct(
    "addr", "net", "host", "prefix", "secret", "relativeurls", "draintimeout",
    "workers",   # distregistry's extension (config/http.py)
    headers=_HEADERS,
    tls=_TLS,
    debug=struct("addr", prometheus=struct("enabled", "path")),
    http2=struct("disabled"),
    h2c=struct("enabled"),
)

_NOTIFICATIONS = Struct({
    "events": Field(struct("includereferences"), go="EVENTCONFIG"),
    # distregistry's extensions: the durable queue, and the envelope version per endpoint.
    "journal": struct("rootdirectory", "maxsize"),
    "endpoints": List(struct(
        "name", "disabled", "url", "timeout", "threshold", "backoff", "envelope",
        headers=_HEADERS,
        ignoredmediatypes=_STRINGS,
        ignore=struct(mediatypes=_STRINGS, actions=_STRINGS),
    )),
})

_REDIS = Struct(
    {
        "tls": struct("certificate", "key", rootcas=_STRINGS),
        # registry:2 2.8's keys
        "addr": SCALAR,
        "pool": struct("maxidle", "maxactive", "idletimeout"),
    },
    inline=("OPTIONS", struct(
        "clientname", "db", "protocol", "username", "password", "sentinelusername",
        "sentinelpassword", "maxretries", "minretrybackoff", "maxretrybackoff", "dialtimeout",
        "readtimeout", "writetimeout", "contexttimeoutenabled", "poolfifo", "poolsize",
        "pooltimeout", "minidleconns", "maxidleconns", "maxactiveconns", "connmaxidletime",
        "connmaxlifetime", "maxredirects", "readonly", "routebylatency", "routerandomly",
        "mastername", "disableidentity", "identitysuffix", "unstableresp3",
        addrs=_STRINGS,
    )),
)

_HEALTH = Struct({
    "file": Field(List(struct("file", "interval", "threshold")), go="FILECHECKERS"),
    "http": Field(
        List(struct("uri", "statuscode", "timeout", "interval", "threshold", headers=_HEADERS)),
        go="HTTPCHECKERS",
    ),
    "tcp": Field(List(struct("addr", "timeout", "interval", "threshold")), go="TCPCHECKERS"),
    "storagedriver": struct("enabled", "interval", "threshold"),
})

CONFIGURATION = struct(
    "version", "loglevel",
    log=_LOG,
    storage=_STORAGE,
    auth=Map(values=Map(), shorthand=True),
    middleware=Map(List(struct("name", "disabled", options=Map()))),
    http=_HTTP,
    notifications=_NOTIFICATIONS,
    redis=_REDIS,
    health=_HEALTH,
    catalog=struct("maxentries"),
    tags=struct("maxtags"),
    proxy=struct(
        "remoteurl", "username", "password", "ttl", "cachewritetimeout",
        exec=struct("command", "lifetime"),
    ),
    validation=struct(
        "enabled", "disabled",
        manifests=struct(
            urls=struct(allow=_STRINGS, deny=_STRINGS),
            indexes=struct("platforms", platformlist=List(struct("architecture", "os"))),
        ),
    ),
    policy=struct(repository=struct(classes=_STRINGS)),
    # distregistry's own: the built-in token server (config/tokenserver.py).
    tokenserver=struct(
        "addr", "issuer", "service", "signingkey", "htpasswd", "expiration", "refreshexpiration",
        tls=_TLS,
        groups=Map(_STRINGS),
        access=List(struct("type", "name", users=_STRINGS, groups=_STRINGS, actions=_STRINGS)),
    ),
)

# Keys registry:2 understands that this build does not implement yet. Setting one (to anything
# but its zero value; for a storage driver or an auth type, naming it at all) is an error, never
# silently ignored. Remove the entry when the section that implements it lands.
NOT_SUPPORTED = frozenset({
    "log.hooks", "log.reportcaller",
    *(f"storage.{d}.{k}" for d in ("s3", "s3aws") for k in ("usedualstack", "accelerate", "usefipsendpoint",
                                                                 "redirectendpoint")),
    "http.tls.letsencrypt", "http.debug", "http.h2c", "tokenserver.tls.letsencrypt",
    "redis.mastername", "health", "proxy", "middleware", "policy",
})

# registry:2 2.8 keys that 3.x dropped: warned about and ignored, as 3.x ignores them.
REMOVED = {
    "compatibility": "removed in registry 3.x with schema1 manifests; ignored",
    "reporting": "removed in registry 3.x (bugsnag/newrelic); ignored",
}
