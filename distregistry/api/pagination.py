"""``n``/``last`` paging shared by catalog, tags and referrers (registry:2 3.x semantics)."""

from distregistry.api.urls import query_arg, query_args
from distregistry.errcode import ErrorCode, RegistryError


def page_args(request, default, maximum, clamp):
    """(n, last) from the query. Bad or negative n → 400 PAGINATION_NUMBER_INVALID; n above
    *maximum* is clamped (tags) or refused (catalog) as registry:2 does."""
    query = query_args(request.uri)
    last = query_arg(query, "last") or None
    raw = query_arg(query, "n")
    if raw is None or raw == "":
        return default, last
    try:
        n = int(raw)
    except ValueError:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": raw}) from None
    if n < 0:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": n})
    if maximum is not None and n > maximum:
        if not clamp:
            raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": n})
        n = maximum
    return n, last


def paginate(api, path, items, n, last, key=lambda item: item, extra=None):
    """(page, headers): sorted *items* whose key is after *last*, at most *n*, and a relative
    Link when the page is full (*extra* query parameters are carried into it)."""
    if last is not None:
        items = [i for i in items if key(i) > last]
    if n is None:
        return items, {}
    page = items[:n]
    headers = {}
    if n and len(page) == n:
        headers["Link"] = api.urls.link_next(path, key(page[-1]), n, extra)
    return page, headers
