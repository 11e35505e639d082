"""registry:2's storage layout (registry/storage/paths.go): the one place disk paths are built.

Everything lives under ``/docker/registry/v2`` of the driver root. Only blobs use the
two-hex-character fan-out directory. ``_referrers`` is distregistry's own addition: a
directory registry:2 skips (it skips every ``_``-prefixed component it does not know).
"""

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"


def _split(digest):
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def blob_dir(digest):
    alg, hexpart = _split(digest)
    return f"{BLOBS}/{alg}/{hexpart[:2]}/{hexpart}"


def blob_data(digest):
    return f"{blob_dir(digest)}/data"


def repository(name):
    return f"{REPOSITORIES}/{name}"


def layer_link(name, digest):
    alg, hexpart = _split(digest)
    return f"{repository(name)}/_layers/{alg}/{hexpart}/link"


def manifests_dir(name):
    return f"{repository(name)}/_manifests"


def revisions_dir(name):
    return f"{manifests_dir(name)}/revisions"


def revision_dir(name, digest):
    alg, hexpart = _split(digest)
    return f"{revisions_dir(name)}/{alg}/{hexpart}"


def revision_link(name, digest):
    return f"{revision_dir(name, digest)}/link"


def tags_dir(name):
    return f"{manifests_dir(name)}/tags"


def tag_dir(name, tag):
    return f"{tags_dir(name)}/{tag}"


def tag_current_link(name, tag):
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_dir(name, tag):
    return f"{tag_dir(name, tag)}/index"


def tag_index_link(name, tag, digest):
    alg, hexpart = _split(digest)
    return f"{tag_index_dir(name, tag)}/{alg}/{hexpart}/link"


def uploads_dir(name):
    return f"{repository(name)}/_uploads"


def upload_dir(name, uuid):
    return f"{uploads_dir(name)}/{uuid}"


def upload_data(name, uuid):
    return f"{upload_dir(name, uuid)}/data"


def upload_startedat(name, uuid):
    return f"{upload_dir(name, uuid)}/startedat"


def referrers_dir(name, subject):
    alg, hexpart = _split(subject)
    return f"{repository(name)}/_referrers/{alg}/{hexpart}"


def referrer_entry(name, subject, referrer):
    """JSON descriptor of *referrer* (a manifest whose ``subject`` is *subject*)."""
    alg, hexpart = _split(referrer)
    return f"{referrers_dir(name, subject)}/{alg}/{hexpart}/descriptor.json"
