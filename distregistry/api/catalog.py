"""``GET /v2/_catalog``: n (default 100, above catalog.maxentries → 400), last, relative Link."""

from distregistry.api.respond import respond_json
from distregistry.api.pagination import page_args

DEFAULT_ENTRIES = 100


async def get_catalog(api, request):
    n, last = page_args(request, DEFAULT_ENTRIES, api.config.catalog.maxentries, clamp=False)
    names = await api.registry.catalog(n, last) if n else []
    headers = {}
    if n and len(names) == n:
        headers["Link"] = api.urls.link_next(api.urls.path("_catalog"), names[-1], n)
    return respond_json(request, 200, {"repositories": names}, headers)
