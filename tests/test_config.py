"""distregistry.config: registry:2's config.yml schema, defaults, errors and env overrides."""

import re
from pathlib import Path

import pytest

from distregistry.config import Config, ConfigError
from distregistry.config.duration import parse_duration
from distregistry.config.schema import NOT_SUPPORTED

REPO = Path(__file__).resolve().parent.parent
MINIMAL = "version: 0.1\nstorage: inmemory\n"


def parse(text=MINIMAL, env=None):
    return Config.parse(text, "config.yml", env or {})


def error(text=MINIMAL, env=None):
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return info.value


def with_(yaml_body):
    """MINIMAL plus more top-level YAML."""
    return MINIMAL + yaml_body


# --- defaults -------------------------------------------------------------------------------


def test_defaults_of_a_minimal_file():
    cfg = parse()
    assert cfg.source == "config.yml"
    assert cfg.warnings == []
    assert (cfg.log.level, cfg.log.formatter, cfg.log.fields, cfg.log.accesslog_disabled) == (
        "info", "text", {}, False,
    )
    s = cfg.storage
    assert (s.driver, s.parameters) == ("inmemory", {})
    assert (s.delete_enabled, s.redirect_disabled, s.readonly, s.tag_concurrencylimit) == (
        False, False, False, 0,
    )
    p = s.uploadpurging
    assert (p.enabled, p.age, p.interval, p.dryrun) == (True, 168 * 3600.0, 24 * 3600.0, False)
    h = cfg.http
    assert (h.addr, h.net, h.host, h.prefix, h.secret) == (":5000", "tcp", "", "/", "")
    assert (h.relativeurls, h.draintimeout, h.headers, h.http2_disabled) == (False, 0.0, {}, False)
    assert cfg.auth is None
    assert cfg.catalog.maxentries == 1000
    assert cfg.tags.maxtags == 1000
    v = cfg.validation
    assert (v.disabled, v.urls_allow, v.urls_deny, v.index_platforms, v.platformlist) == (
        False, [], [], "all", [],
    )


def test_filesystem_defaults_and_maxthreads_clamp():
    cfg = parse("version: 0.1\nstorage: filesystem\n")
    assert cfg.storage.parameters == {"rootdirectory": "/var/lib/registry", "maxthreads": 100}
    cfg = parse("version: 0.1\nstorage: {filesystem: {rootdirectory: /srv/r, maxthreads: 10}}\n")
    assert cfg.storage.parameters == {"rootdirectory": "/srv/r", "maxthreads": 25}
    assert cfg.warnings == ["config.yml: storage.filesystem.maxthreads: 10 is below the minimum of 25; using 25"]
    cfg = parse("version: 0.1\nstorage: {filesystem: {maxthreads: '50'}}\n")
    assert cfg.storage.parameters["maxthreads"] == 50


def test_a_full_supported_file():
    cfg = parse("""
version: "0.1"
log:
  level: DEBUG
  formatter: json
  fields: {service: registry, env: 3}
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: /data}
  delete: {enabled: true}
  redirect: {disable: true}
  tag: {concurrencylimit: 8}
  maintenance:
    readonly: {enabled: true}
    uploadpurging: {enabled: false, age: 1h30m, interval: 10m, dryrun: true}
http:
  addr: "[::1]:5001"
  host: https://registry.example.com
  prefix: registry
  secret: 0123
  relativeurls: true
  draintimeout: 1.5s
  headers:
    x-frame-options: DENY
    X-Content-Type-Options: [nosniff]
  http2: {disabled: true}
auth: none
catalog: {maxentries: -5}
tags: {maxtags: 50}
validation:
  manifests:
    urls: {allow: ['^https?://'], deny: ['^https?://www\\.example\\.com/']}
    indexes:
      platforms: List
      platformlist: [{architecture: amd64, os: linux}]
""")
    assert cfg.warnings == []
    assert (cfg.log.level, cfg.log.formatter, cfg.log.fields, cfg.log.accesslog_disabled) == (
        "debug", "json", {"service": "registry", "env": 3}, True,
    )
    s = cfg.storage
    assert (s.driver, s.parameters["rootdirectory"]) == ("filesystem", "/data")
    assert (s.delete_enabled, s.redirect_disabled, s.readonly, s.tag_concurrencylimit) == (True, True, True, 8)
    p = s.uploadpurging
    assert (p.enabled, p.age, p.interval, p.dryrun) == (False, 5400.0, 600.0, True)
    h = cfg.http
    assert (h.addr, h.host, h.prefix, h.relativeurls, h.draintimeout, h.http2_disabled) == (
        "[::1]:5001", "https://registry.example.com", "/registry/", True, 1.5, True,
    )
    assert h.secret == "0123"  # as written, like a Go string field (not YAML 1.1 octal 83)
    assert h.headers == {"X-Frame-Options": ["DENY"], "X-Content-Type-Options": ["nosniff"]}
    assert cfg.catalog.maxentries == 1000
    assert cfg.tags.maxtags == 50
    v = cfg.validation
    assert [r.pattern for r in v.urls_allow] == ["^https?://"]
    assert v.urls_deny[0].search("http://www.example.com/x")
    assert (v.index_platforms, v.platformlist) == ("list", [("amd64", "linux")])


@pytest.mark.parametrize("prefix, normalised", [("", "/"), ("/", "/"), ("/a", "/a/"), ("a/b/", "/a/b/")])
def test_prefix_is_normalised(prefix, normalised):
    assert parse(with_(f"http: {{prefix: '{prefix}'}}\n")).http.prefix == normalised


def test_unix_socket_listening():
    cfg = parse(with_("http: {net: unix, addr: /run/registry.sock}\n"))
    assert (cfg.http.net, cfg.http.addr) == ("unix", "/run/registry.sock")
    assert error(with_("http: {net: unix}\n")).keypath == "http.addr"


def test_deprecated_loglevel_is_used_with_a_warning():
    cfg = parse(with_("loglevel: warn\n"))
    assert cfg.log.level == "warn"
    assert cfg.warnings == ["config.yml: loglevel: deprecated, use log.level"]
    assert parse(with_("loglevel: warn\nlog: {level: error}\n")).log.level == "error"


def test_validation_enabled_is_deprecated_and_wins_over_disabled():
    assert parse(with_("validation: {disabled: true}\n")).validation.disabled is True
    cfg = parse(with_("validation: {disabled: true, enabled: true}\n"))
    assert cfg.validation.disabled is False  # registry:2 validates when `enabled` is true
    assert cfg.warnings == ["config.yml: validation.enabled: deprecated, use validation.disabled"]
    cfg = parse(with_("validation: {enabled: false}\n"))
    assert cfg.validation.disabled is False
    assert "false has no effect" in cfg.warnings[0]


def test_auth_none_in_any_form_means_no_auth():
    for auth in ("auth: none", "auth: NONE", "auth: {none: {}}", "auth:"):
        assert parse(with_(auth + "\n")).auth is None


# --- the shipped default --------------------------------------------------------------------


def test_embedded_default_loads_and_matches_conf():
    cfg = Config.load(environ={})
    assert cfg.source == "<embedded default>"
    assert cfg.warnings == []
    assert cfg.storage.driver == "filesystem"
    assert cfg.storage.parameters["rootdirectory"] == "/var/lib/registry"
    assert cfg.storage.delete_enabled is False
    assert (cfg.log.level, cfg.log.formatter) == ("info", "text")
    assert cfg.http.addr == ":5000"
    assert cfg.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    shipped = (REPO / "conf" / "config.yml").read_bytes()
    assert shipped == (REPO / "distregistry" / "config" / "default.yml").read_bytes()


def test_load_reads_the_path_then_the_environment_variable(tmp_path):
    a = tmp_path / "a.yml"
    a.write_text("version: 0.1\nstorage: inmemory\nhttp: {addr: ':1'}\n")
    b = tmp_path / "b.yml"
    b.write_text("version: 0.1\nstorage: inmemory\nhttp: {addr: ':2'}\n")
    env = {"REGISTRY_CONFIGURATION_PATH": str(b)}
    assert Config.load(str(a), env).http.addr == ":1"
    cfg = Config.load(environ=env)
    assert (cfg.source, cfg.http.addr, cfg.warnings) == (str(b), ":2", [])


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yml"
    e = pytest.raises(ConfigError, Config.load, str(missing), {}).value
    assert str(e).startswith(f"{missing}: cannot read the configuration")
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 0.1\nstorage:\n  inmemory: {\n")
    e = pytest.raises(ConfigError, Config.load, str(bad), {}).value
    assert str(e).startswith(f"{bad}: line 4: invalid YAML")


# --- errors name file and key path ----------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("storage: inmemory\n", 'config.yml: version: missing; expected "0.1"'),
    ("version: 0.2\nstorage: inmemory\n", 'config.yml: version: unsupported version 0.2; expected "0.1"'),
    ("version: 0.10\nstorage: inmemory\n", 'config.yml: version: unsupported version 0.10; expected "0.1"'),
    ("- a\n", "config.yml: expected a mapping, got a list"),
    ("version: 0.1\n", "config.yml: storage: no storage configuration provided"),
    ("version: 0.1\nstorage: {delete: {enabled: true}}\n",
     "config.yml: storage: no storage configuration provided"),
    ("version: 0.1\nstorage: {filesystem: {}, inmemory: {}}\n",
     "config.yml: storage: must provide exactly one storage type. Provided: [filesystem inmemory]"),
    ("version: 0.1\nstorage: swift\n",
     "config.yml: storage.swift: unknown storage driver; expected one of filesystem, inmemory"),
    ("version: 0.1\nstorage: {inmemory: x}\n", "config.yml: storage.inmemory: expected a mapping, got 'x'"),
    ("version: 0.1\nstorage: {filesystem: {rootdirectory: ''}}\n",
     "config.yml: storage.filesystem.rootdirectory: must not be empty"),
    ("version: 0.1\nstorage: {filesystem: {maxthreads: lots}}\n",
     "config.yml: storage.filesystem.maxthreads: expected an integer, got 'lots'"),
    (with_("storage: {inmemory: , maintenance: {uploadpurging: {age: abc}}}\n"),
     'config.yml: storage.maintenance.uploadpurging.age: expected a duration such as "168h", got \'abc\''),
    (with_("storage: {inmemory: , maintenance: {uploadpurging: {interval: 0s}}}\n"),
     "config.yml: storage.maintenance.uploadpurging.interval: must be greater than zero"),
    (with_("storage: {inmemory: , maintenance: {readonly: {enabled: 'yes'}}}\n"),
     "config.yml: storage.maintenance.readonly.enabled: expected true or false, got 'yes'"),
    (with_("storage: {inmemory: , maintenance: {readonly: true}}\n"),
     "config.yml: storage.maintenance.readonly: expected a mapping, got True"),
    (with_("storage: {inmemory: , delete: {enabled: 1}}\n"),
     "config.yml: storage.delete.enabled: expected true or false, got 1"),
    (with_("storage: {inmemory: , tag: {concurrencylimit: -1}}\n"),
     "config.yml: storage.tag.concurrencylimit: must be at least 0, got -1"),
    (with_("log: {level: warning}\n"),
     "config.yml: log.level: expected one of error, warn, info, debug, got 'warning'"),
    (with_("log: {formatter: xml}\n"),
     "config.yml: log.formatter: expected one of text, json, logstash, got 'xml'"),
    (with_("log: {accesslog: {disabled: on_}}\n"),
     "config.yml: log.accesslog.disabled: expected true or false, got 'on_'"),
    (with_("log: {fields: [a]}\n"), "config.yml: log.fields: expected a mapping, got a list"),
    (with_("log: debug\n"), "config.yml: log: expected a mapping, got 'debug'"),
    (with_("http: {addr: '5000'}\n"), 'config.yml: http.addr: expected host:port such as ":5000", got \'5000\''),
    (with_("http: {addr: ':99999'}\n"), 'config.yml: http.addr: expected host:port such as ":5000", got \':99999\''),
    (with_("http: {addr: '::1:5000'}\n"), 'config.yml: http.addr: expected host:port such as ":5000", got \'::1:5000\''),
    (with_("http: {net: udp}\n"), "config.yml: http.net: expected one of tcp, unix, got 'udp'"),
    (with_("http: {host: registry.example.com}\n"),
     'config.yml: http.host: expected an absolute URL such as "https://registry.example.com", '
     "got 'registry.example.com'"),
    (with_("http: {draintimeout: -1s}\n"), "config.yml: http.draintimeout: must not be negative, got '-1s'"),
    (with_("http: {draintimeout: 1.5}\n"), 'config.yml: http.draintimeout: expected a duration such as "168h", got 1.5'),
    (with_("http: {secret: true}\n"), "config.yml: http.secret: expected a string, got True"),
    (with_("http: {headers: {'Bad Name': [x]}}\n"), "config.yml: http.headers.Bad Name: not a valid header name"),
    (with_("http: {headers: {X-A: [\"a\\r\\nb\"]}}\n"),
     "config.yml: http.headers.X-A.0: header values must not contain CR, LF or NUL"),
    (with_("http: {headers: {X-A: [~]}}\n"), "config.yml: http.headers.X-A.0: expected a header value, got null"),
    (with_("http: {http2: {disabled: 'no'}}\n"), "config.yml: http.http2.disabled: expected true or false, got 'no'"),
    (with_("auth: {none: , token: }\n"), "config.yml: auth: must provide exactly one type. Provided: [none token]"),
    (with_("auth: ldap\n"), "config.yml: auth.ldap: unknown auth type; expected one of htpasswd, token, silly, none"),
    (with_("catalog: {maxentries: ten}\n"), "config.yml: catalog.maxentries: expected an integer, got 'ten'"),
    (with_("tags: {maxtags: -1}\n"), "config.yml: tags.maxtags: maxtags limit must be a non-negative integer value"),
    (with_("validation: {disabled: 1}\n"), "config.yml: validation.disabled: expected true or false, got 1"),
    (with_("validation: {manifests: {urls: {allow: ['(']}}}\n"),
     "config.yml: validation.manifests.urls.allow.0: invalid regular expression '('"),
    (with_("validation: {manifests: {urls: {deny: [ok, '[']}}}\n"),
     "config.yml: validation.manifests.urls.deny.1: invalid regular expression '['"),
    (with_("validation: {manifests: {urls: {allow: x}}}\n"),
     "config.yml: validation.manifests.urls.allow: expected a list, got 'x'"),
    (with_("validation: {manifests: {indexes: {platforms: some}}}\n"),
     "config.yml: validation.manifests.indexes.platforms: expected one of all, none, list, got 'some'"),
    (with_("validation: {manifests: {indexes: {platformlist: [{os: [linux]}]}}}\n"),
     "config.yml: validation.manifests.indexes.platformlist.0.os: expected a string, got a list"),
])
def test_errors_name_the_file_and_the_key_path(text, expected):
    assert str(error(text)).startswith(expected)


def test_yaml_syntax_error_names_the_line():
    e = error("version: 0.1\nstorage: inmemory\nhttp:\n  addr: :5000\n   bad: indent\n")
    assert (e.source, e.line, e.keypath) == ("config.yml", 5, "")
    assert str(e).startswith("config.yml: line 5: invalid YAML: ")


def test_non_scalar_keys_and_multiple_documents_are_errors():
    assert str(error("version: 0.1\n? [a]\n: b\n")).startswith("config.yml: line 2: invalid YAML: mapping keys")
    assert str(error("version: 0.1\n---\nversion: 0.1\n")).startswith("config.yml: line 2: invalid YAML")


def test_yaml_is_read_as_registry_2_reads_it():
    cfg = parse(with_("log:\n  fields:\n    on: 2020-01-01\n    x: 1\n    x: 2\n"))
    # keys are their text, timestamps stay strings, the last duplicate wins (with a warning)
    assert cfg.log.fields == {"on": "2020-01-01", "x": 2}
    assert cfg.warnings == ["config.yml: line 7: duplicate key 'x', the last one wins"]


def test_dict_input_is_not_modified():
    tree = {"version": "0.1", "storage": {"inmemory": {}}}
    cfg = Config.parse(tree, environ={"REGISTRY_STORAGE_DELETE_ENABLED": "true"})
    assert cfg.source == "<string>"
    assert cfg.storage.delete_enabled is True
    assert tree == {"version": "0.1", "storage": {"inmemory": {}}}


# --- unknown, removed and not-supported keys ------------------------------------------------


def test_unknown_and_removed_keys_warn():
    cfg = parse(
        "version: 0.1\n"
        "htpp: {}\n"
        "http: {adr: ':1'}\n"
        "compatibility: {schema1: {enabled: true}}\n"
        "reporting: {bugsnag: {apikey: x}}\n"
        "storage: {inmemory: {x: 1}, delete: {enable: true}}\n"
        "log: {fields: {anything: goes}}\n"
    )
    assert cfg.warnings == [
        "config.yml: htpp: unknown configuration key, ignored",
        "config.yml: http.adr: unknown configuration key, ignored",
        "config.yml: compatibility: removed in registry 3.x with schema1 manifests; ignored",
        "config.yml: reporting: removed in registry 3.x (bugsnag/newrelic); ignored",
        "config.yml: storage.inmemory.x: unknown configuration key, ignored",
        "config.yml: storage.delete.enable: unknown configuration key, ignored",
    ]
    assert cfg.storage.delete_enabled is False


NOT_SUPPORTED_YAML = {
    "log.hooks": "log: {hooks: [{type: mail}]}",
    "log.reportcaller": "log: {reportcaller: true}",
    **{f"storage.{d}.{k}": f"storage: {{{d}: {{bucket: b, region: r, {k}: x}}}}"
       for d in ("s3", "s3aws") for k in ("usedualstack", "accelerate", "usefipsendpoint", "redirectendpoint")},
    "http.tls.letsencrypt": "http: {tls: {letsencrypt: {cachefile: /c}}}",
    "tokenserver.tls.letsencrypt": "tokenserver: {tls: {letsencrypt: {cachefile: /c}}}",
    "http.debug": "http: {debug: {addr: ':5001'}}",
    "http.h2c": "http: {h2c: {enabled: true}}",
    "redis.mastername": "redis: {addrs: [localhost:6379], mastername: m}",
    "health": "health: {storagedriver: {enabled: true}}",
    "proxy": "proxy: {remoteurl: 'https://registry-1.docker.io'}",
    "middleware": "middleware: {storage: [{name: redirect}]}",
    "policy": "policy: {repository: {classes: [image]}}",
}


def test_every_not_supported_key_has_a_test():
    assert set(NOT_SUPPORTED_YAML) == NOT_SUPPORTED


@pytest.mark.parametrize("key", sorted(NOT_SUPPORTED_YAML))
def test_not_supported_yet(key):
    text = "version: 0.1\n" + NOT_SUPPORTED_YAML[key] + "\n"
    if not key.startswith("storage."):
        text += "storage: inmemory\n"
    assert str(error(text)) == f"config.yml: {key}: not supported yet"


def test_zero_valued_unsupported_sections_are_harmless():
    cfg = parse(with_(
        "notifications: {endpoints: []}\nhttp: {tls: {}, h2c: {enabled: false}}\n"
        "log: {reportcaller: false}\nhealth:\nredis: {}\n"
    ))
    assert cfg.warnings == []


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0), ("10s", 10.0), ("1h30m", 5400.0), ("168h", 604800.0), ("100ms", 0.1),
    ("1.5s", 1.5), (".5s", 0.5), ("1.s", 1.0), ("2us", 2e-6), ("3\u00b5s", 3e-6), ("3\u03bcs", 3e-6),
    ("5ns", 5e-9), ("1h1m1s1ms", 3661.001), ("+2m", 120.0), ("-1s", -1.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1d", ".", ".s", "s", "1.5", "1 s", "1mm", "-", "abc", "3000000h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bare_integer_durations_are_nanoseconds():
    cfg = parse(with_("http: {draintimeout: 2000000000}\n"))
    assert (cfg.http.draintimeout, cfg.warnings) == (2.0, [])
    cfg = parse(with_("http: {draintimeout: 30}\n"))
    assert cfg.http.draintimeout == pytest.approx(30e-9)
    assert cfg.warnings == [
        'config.yml: http.draintimeout: bare integer 30 is read as nanoseconds; write "30s" for seconds'
    ]


# --- environment overrides ------------------------------------------------------------------


def test_overrides_are_yaml_typed_and_set_nested_keys():
    cfg = parse(env={
        "REGISTRY_LOG_LEVEL": "debug",
        "REGISTRY_LOG_ACCESSLOG_DISABLED": "true",
        "REGISTRY_HTTP_DRAINTIMEOUT": "10s",
        "REGISTRY_HTTP_SECRET": "12345",
        "REGISTRY_CATALOG_MAXENTRIES": "5",
        "REGISTRY_LOG_FIELDS": "{team: a, n: 1}",
    })
    assert cfg.warnings == []
    assert (cfg.log.level, cfg.log.accesslog_disabled) == ("debug", True)
    assert (cfg.http.draintimeout, cfg.http.secret) == (10.0, "12345")
    assert cfg.catalog.maxentries == 5
    assert cfg.log.fields == {"team": "a", "n": 1}


def test_overrides_create_sections_registry_2_would_panic_on():
    cfg = parse(env={
        "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED": "true",
        "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED": "false",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
    })
    assert cfg.storage.readonly is True
    assert cfg.storage.uploadpurging.enabled is False
    assert cfg.storage.delete_enabled is True


def test_overrides_apply_in_lexical_order():
    # REGISTRY_HTTP_HEADERS replaces the map first; the more specific variable then adds to it.
    env = {"REGISTRY_HTTP_HEADERS_X-B": "[2]", "REGISTRY_HTTP_HEADERS": "{X-A: [1]}"}
    assert parse(env=env).http.headers == {"X-A": ["1"], "X-B": ["2"]}


def test_map_keys_match_case_insensitively_else_are_lower_cased():
    text = with_("http: {headers: {X-Frame-Options: [DENY]}}\nlog: {fields: {Team: a}}\n")
    cfg = parse(text, env={
        "REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS": "[SAMEORIGIN]",
        "REGISTRY_HTTP_HEADERS_X-Test": "[a, b]",
        "REGISTRY_LOG_FIELDS_TEAM": "b",
        "REGISTRY_LOG_FIELDS_ZONE": "eu",
    })
    assert cfg.http.headers == {"X-Frame-Options": ["SAMEORIGIN"], "X-Test": ["a", "b"]}
    assert cfg.log.fields == {"Team": "b", "zone": "eu"}


def test_driver_parameters_by_override():
    cfg = parse("version: 0.1\nstorage: filesystem\n", env={
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/srv/registry",
        "REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS": "64",
    })
    assert cfg.storage.parameters == {"rootdirectory": "/srv/registry", "maxthreads": 64}


def test_registry_storage_replaces_the_whole_storage_map():
    text = "version: 0.1\nstorage: {filesystem: {rootdirectory: /x}, delete: {enabled: true}}\n"
    cfg = parse(text, env={"REGISTRY_STORAGE": "inmemory"})
    assert (cfg.storage.driver, cfg.storage.delete_enabled) == ("inmemory", False)
    cfg = parse(text, env={"REGISTRY_STORAGE": "inmemory", "REGISTRY_STORAGE_DELETE_ENABLED": "true"})
    assert (cfg.storage.driver, cfg.storage.delete_enabled) == ("inmemory", True)
    e = error(text, env={"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "b"})
    assert str(e) == "config.yml: storage.s3.region: required unless regionendpoint is set (from REGISTRY_STORAGE)"


def test_a_second_driver_by_override_is_an_error_naming_it():
    e = error("version: 0.1\nstorage: filesystem\n", env={"REGISTRY_STORAGE_INMEMORY": "{}"})
    assert str(e) == (
        "config.yml: storage: must provide exactly one storage type. Provided: [filesystem inmemory] "
        "(from REGISTRY_STORAGE_INMEMORY)"
    )


def test_go_field_names_not_yaml_keys_name_struct_fields():
    e = error(env={"REGISTRY_HEALTH_FILECHECKERS_0_FILE": "/tmp/down"})
    assert str(e) == "config.yml: health: not supported yet (from REGISTRY_HEALTH_FILECHECKERS_0_FILE)"
    cfg = parse(with_(""), env={"REGISTRY_NOTIFICATIONS_EVENTCONFIG_INCLUDEREFERENCES": "true"})
    assert cfg.notifications.include_references is True
    e = error(env={"REGISTRY_LOG_HOOKS_0_MAILOPTIONS_SMTP_ADDR": "mail:25"})
    assert e.keypath == "log.hooks"
    e = error(env={"REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0": "a.example"})
    assert e.keypath == "http.tls.letsencrypt"
    # redis' inline options: with or without the Go field name
    assert error(env={"REGISTRY_REDIS_ADDRS": "[r:6379]", "REGISTRY_REDIS_MASTERNAME": "m"}).variables == (
        "REGISTRY_REDIS_MASTERNAME",)
    assert parse(env={"REGISTRY_REDIS_OPTIONS_ADDRS": "[r:6379]"}).redis.host == "r"
    assert parse(env={"REGISTRY_REDIS_ADDRS": "[r:6379]"}).redis.port == 6379
    # the YAML key is not the Go name: registry:2 ignores these
    cfg = parse(env={
        "REGISTRY_HEALTH_FILE_0_FILE": "/tmp/down",
        "REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES": "true",
        "REGISTRY_http_ADDR": ":1",
    })
    assert cfg.warnings == [
        "Ignoring unrecognized environment variable REGISTRY_HEALTH_FILE_0_FILE",
        "Ignoring unrecognized environment variable REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES",
        "Ignoring unrecognized environment variable REGISTRY_http_ADDR",
    ]
    assert cfg.http.addr == ":5000"


def test_list_indexes_set_append_and_fail_out_of_range():
    text = with_("validation: {manifests: {urls: {allow: ['^a']}}}\n")
    cfg = parse(text, env={
        "REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_0": "^b",
        "REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_1": "^c",
    })
    assert [r.pattern for r in cfg.validation.urls_allow] == ["^b", "^c"]
    cfg = parse(env={"REGISTRY_VALIDATION_MANIFESTS_INDEXES_PLATFORMLIST_0_OS": "linux"})
    assert cfg.validation.platformlist == [("", "linux")]
    e = error(text, env={"REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_2": "^c"})
    assert str(e) == (
        "config.yml: validation.manifests.urls.allow: index 2 is out of range "
        "(the list has 1 items; index 1 appends) (from REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_2)"
    )
    e = error(text, env={"REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_X": "^c"})
    assert e.variables == ("REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_X",)
    assert "'X' is not a list index" in str(e)


def test_an_override_making_a_value_invalid_names_key_and_variable():
    e = error(env={"REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE": "abc"})
    assert str(e) == (
        'config.yml: storage.maintenance.uploadpurging.age: expected a duration such as "168h", '
        "got 'abc' (from REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE)"
    )
    e = error(env={"REGISTRY_STORAGE_MAINTENANCE_READONLY": "{enabled: maybe}"})
    assert (e.keypath, e.variables) == (
        "storage.maintenance.readonly.enabled", ("REGISTRY_STORAGE_MAINTENANCE_READONLY",)
    )
    e = error(env={"REGISTRY_HTTP_ADDR": "[oops"})
    assert (e.keypath, e.variables) == ("http.addr", ("REGISTRY_HTTP_ADDR",))
    assert "invalid YAML" in e.message
    e = error(with_("log: debug\n"), env={"REGISTRY_LOG_LEVEL": "info"})
    assert (e.keypath, e.variables) == ("log", ("REGISTRY_LOG_LEVEL",))


def test_unrecognized_overrides_warn_and_change_nothing():
    cfg = parse(env={
        "REGISTRY_NOPE": "1",
        "REGISTRY_STORAGE_": "x",
        "REGISTRY_HTTP_ADDR_X": "1",  # a scalar has no parts
        "REGISTRY_COMPATIBILITY_SCHEMA1_ENABLED": "true",  # 2.8 only
        "REGISTRY_CONFIGURATION_PATH": "/etc/distribution/config.yml",  # not an override
        "OTHER_HTTP_ADDR": ":1",
    })
    assert cfg.warnings == [
        "Ignoring unrecognized environment variable REGISTRY_COMPATIBILITY_SCHEMA1_ENABLED",
        "Ignoring unrecognized environment variable REGISTRY_HTTP_ADDR_X",
        "Ignoring unrecognized environment variable REGISTRY_NOPE",
        "Ignoring unrecognized environment variable REGISTRY_STORAGE_",
    ]
    assert cfg.http.addr == ":5000"


def test_kubernetes_service_links_are_skipped_with_a_warning():
    env = {
        "REGISTRY_PORT": "tcp://10.0.0.7:5000",
        "REGISTRY_AUTH_PORT": "tcp://10.0.0.8:5001",
        "REGISTRY_AUTH_PORT_5001_TCP": "tcp://10.0.0.8:5001",
        "REGISTRY_AUTH_PORT_5001_TCP_PROTO": "tcp",
        "REGISTRY_AUTH_PORT_5001_TCP_PORT": "5001",
        "REGISTRY_AUTH_PORT_5001_TCP_ADDR": "10.0.0.8",
        "REGISTRY_AUTH_SERVICE_HOST": "10.0.0.8",
        "REGISTRY_AUTH_SERVICE_PORT": "5001",
    }
    cfg = parse(env=env)
    assert cfg.auth is None
    assert len(cfg.warnings) == len(env)
    assert all(re.match(r"Ignoring environment variable REGISTRY_\w+: it looks like a Kubernetes service link", w)
               for w in cfg.warnings)


def test_overrides_from_load_use_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("REGISTRY_HTTP_ADDR", ":7777")
    monkeypatch.delenv("REGISTRY_CONFIGURATION_PATH", raising=False)
    assert Config.load().http.addr == ":7777"
