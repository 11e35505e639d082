"""Repository names, tags and digests: the OCI grammar, checked before anything touches storage."""

import functools
import re

from distregistry.errcode import ErrorCode, RegistryError

# distribution/reference: optional domain[:port]/ then lowercase path components.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)"
NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}
NAME_MAX = 255
# Checks are pure, and the same names and digests come back request after request: a valid
# answer is remembered (the name grammar alone was ~3 % of a manifest GET's CPU).


def _memo(fn):
    cached = functools.lru_cache(maxsize=4096)(fn)

    @functools.wraps(fn)
    def check(value, *args):
        # Only strings are remembered: anything else (a JSON number, a list) is refused anew.
        return cached(value, *args) if type(value) is str else fn(value, *args)

    return check


@_memo
def validate_name(name):
    """Return *name* or raise NAME_INVALID (never reaches storage with a bad name)."""
    if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name if isinstance(name, str) else repr(name)})
    # The domain part may carry uppercase; path components below it never do, and the
    # storage path must never be one the Go registry would not find.
    return name


@_memo
def is_tag(reference):
    return bool(TAG_RE.match(reference))


def validate_tag(tag):
    if not is_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, detail={"Tag": tag})
    return tag


@_memo
def is_digest(reference):
    return ":" in reference and bool(DIGEST_RE.match(reference))


@_memo
def parse_digest(digest, code=ErrorCode.DIGEST_INVALID):
    """Return the canonical ``alg:hex`` string or raise *code* (DIGEST_INVALID by default)."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise RegistryError(code, detail="digest parsing failed" if code is ErrorCode.DIGEST_INVALID else digest)
    alg, _, hexpart = digest.partition(":")
    checker = _HEX.get(alg)
    if checker is None:
        raise RegistryError(ErrorCode.UNSUPPORTED if code is ErrorCode.DIGEST_INVALID else code,
                            detail=f"unsupported digest algorithm: {alg}")
    if not checker.match(hexpart):
        raise RegistryError(code, detail="invalid checksum digest format" if code is ErrorCode.DIGEST_INVALID
                            else digest)
    return digest
