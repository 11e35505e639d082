"""``GET /v2/<name>/tags/list``: sorted, n/last/Link, ``[]`` never null (registry:2 3.x)."""

from distregistry.api.pagination import page_args, paginate
from distregistry.api.respond import respond_json


async def get_tags(api, request, repo):
    n, last = page_args(request, None, api.config.tags.maxtags, clamp=True)
    tags = await repo.tags.list()
    page, headers = paginate(api, api.urls.path(repo.name, "tags", "list"), tags, n, last)
    return respond_json(request, 200, {"name": repo.name, "tags": page}, headers)
