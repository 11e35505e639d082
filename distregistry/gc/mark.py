"""The mark phase, one repository at a time (registry:2's MarkAndSweep, 3.x semantics).

Roots are every manifest revision, or with ``delete_untagged`` the tagged ones (and, online,
revisions linked within the grace period). Marking a manifest marks its references (config
and layers, or an index's children, recursing into children linked in the repository) and
then the untagged manifests whose ``subject`` it is: signatures, SBOMs and attestations stay
with what they describe (registry:2 does not follow ``subject`` and deletes them). Untagged
manifests nothing marked become candidates, decided per repository: a digest marked only in
another repository does not keep this repository's revision (registry:2 3.x's global
"unmark" would).
"""

from distregistry import manifest as manifest_format
from distregistry.errcode import RegistryError
from distregistry.reference import parse_digest
from distregistry.registry import gather, paths
from distregistry.registry.blobs import read_link
from distregistry.gc.state import ManifestCandidate
from distregistry.storage.driver.base import PathNotFoundError, SkipDir


class GCError(Exception):
    """The run stopped before deleting anything it could not prove unreferenced."""


async def digest_dirs(state, root):
    """``[(digest, path)]`` of the ``<root>/<alg>/<hex>`` directories ([] if *root* is absent)."""
    try:
        algorithms = await state.call(state.driver.list, root)
    except PathNotFoundError:
        return []
    found = []
    for algorithm_dir in algorithms:
        try:
            entries = await state.call(state.driver.list, algorithm_dir)
        except PathNotFoundError:
            continue
        algorithm = algorithm_dir.rpartition("/")[2]
        for entry in entries:
            try:
                found.append((parse_digest(f"{algorithm}:{entry.rpartition('/')[2]}"), entry))
            except RegistryError:
                pass   # registry:2 cannot read such a path as a digest either
    return found


async def link_files(state, root):
    """``[(digest, modtime)]`` of the ``<alg>/<hex>/link`` files below *root* ([] if absent).

    One listing per ``<alg>`` directory, then the link files stat'ed in parallel: a walk would
    visit the ``<hex>`` directories one at a time. A ``<hex>`` directory without a link (what
    a blob or manifest DELETE leaves) links nothing, as for registry:2.
    """
    driver = state.driver
    candidates = [(digest, path + "/link") for digest, path in await digest_dirs(state, root)]

    async def stat(link):
        try:
            info = await state.call(driver.stat, link)
        except PathNotFoundError:
            return None
        return None if info.is_dir else info.modtime

    modtimes = await gather([lambda link=link: stat(link) for _, link in candidates], limit=state.options.concurrency)
    return [(digest, modtime) for (digest, _), modtime in zip(candidates, modtimes) if modtime is not None]


async def repositories(state):
    """Names of the directories holding ``_manifests`` or ``_layers``, in walk order. Wider
    than the catalog (``_manifests`` only): a repository whose first push has uploaded blobs
    but no manifest yet has young layer links that must protect those blobs."""
    names = []
    root = paths.REPOSITORIES

    def visit(info):
        parent, _, base = info.path[len(root) + 1:].rpartition("/")
        if base.startswith("_"):
            if base in ("_manifests", "_layers") and parent and (not names or names[-1] != parent):
                names.append(parent)
            if info.is_dir:
                raise SkipDir()

    try:
        await state.driver.walk(root, visit)
    except PathNotFoundError:
        pass
    return names


async def current_tags(state, name):
    """``{digest: [tags]}`` from every tag's ``current/link`` (registry:2's Lookup for all at once)."""
    try:
        entries = await state.call(state.driver.list, paths.tags_dir(name))
    except PathNotFoundError:
        return {}
    tags = sorted(entry.rpartition("/")[2] for entry in entries)
    targets = await gather([lambda t=t: state.call(read_link, state.driver, paths.tag_current_link(name, t))
                            for t in tags], limit=state.options.concurrency)
    by_digest = {}
    for tag, digest in zip(tags, targets):
        if digest is not None:
            by_digest.setdefault(digest, []).append(tag)
    return by_digest


async def load_manifest(state, name, digest):
    """The stored manifest, None if its data is gone (nothing to mark through it); GCError if
    it is unreadable: marking on regardless could delete blobs it references."""
    try:
        payload = await state.call(state.driver.get_content, paths.blob_data(digest))
    except PathNotFoundError:
        return None
    try:
        return manifest_format.load(payload)
    except (RegistryError, UnicodeDecodeError) as error:
        raise GCError(f"failed to mark: {name}: manifest {digest} is unreadable: {error}") from None


async def mark_repository(state, name, report):
    revisions = await link_files(state, paths.revisions_dir(name))
    revision_set = {digest for digest, _ in revisions}
    if state.options.delete_untagged:
        tagged = await current_tags(state, name)
        roots = [d for d, modtime in revisions if d in tagged or state.is_young(modtime)
                 or (state.guard is not None and state.guard.referenced_since(d, state.since))]
    else:
        roots = [d for d, _ in revisions]
    root_set = set(roots)
    others = [d for d, _ in revisions if d not in root_set]

    # Untagged manifests are read for their subject only; no body outlives its read.
    async def subject(digest):
        m = await load_manifest(state, name, digest)
        return m.subject.digest if m is not None and m.subject is not None else None

    subjects = await gather([lambda d=d: subject(d) for d in others], limit=state.options.concurrency)
    referrers, subject_of = {}, {}
    for digest, subject_digest in zip(others, subjects):
        if subject_digest is not None:
            referrers.setdefault(subject_digest, []).append(digest)
            subject_of[digest] = subject_digest

    here = set()

    async def mark_manifest(digest):
        if digest in here:
            return
        here.add(digest)
        state.marked.add(digest)
        report.marking_manifest(name, digest)
        m = await load_manifest(state, name, digest)
        follow = list(referrers.pop(digest, ()))
        if m is not None:
            for ref in m.references():
                if state.mark(ref.digest):
                    report.marking_blob(name, ref.digest)
                if m.is_index and ref.digest in revision_set:
                    follow.append(ref.digest)
        del m   # not held while the children are marked
        # Each call holds the concurrency limit only around its own driver call, so nested
        # marking cannot deadlock on it.
        await gather([lambda d=d: mark_manifest(d) for d in follow], limit=state.options.concurrency)

    await gather([lambda d=d: mark_manifest(d) for d in roots], limit=state.options.concurrency)

    for digest in others:
        if digest not in here:
            state.manifest_candidates.append(ManifestCandidate(name, digest, subject_of.get(digest)))

    # Layer links: a young one protects its blob (an upload committed for a push whose
    # manifest is not there yet); the others go if nothing marks their digest by the end.
    for digest, modtime in await link_files(state, f"{paths.repository(name)}/_layers"):
        if state.is_young(modtime):
            state.marked.add(digest)
        elif digest not in state.marked:
            state.layer_candidates.append((name, digest))
