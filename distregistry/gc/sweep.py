"""The sweep (registry:2's vacuum): unreferenced manifest revisions (``--delete-untagged``),
then blobs, then layer links, each re-checked right before it is deleted."""

import posixpath

from distregistry.gc.mark import digest_dirs
from distregistry.registry import gather, paths
from distregistry.storage.driver.base import PathNotFoundError


async def tag_history(state, name):
    """``{digest: [tags]}`` of every tag whose ``index/`` history names the digest."""
    driver = state.driver
    try:
        entries = await state.call(driver.list, paths.tags_dir(name))
    except PathNotFoundError:
        return {}
    history = {}
    for tag in sorted(entry.rpartition("/")[2] for entry in entries):
        for digest, _ in await digest_dirs(state, paths.tag_index_dir(name, tag)):
            history.setdefault(digest, []).append(tag)
    return history


async def _delete_quietly(state, path):
    try:
        await state.call(state.driver.delete, path)
    except PathNotFoundError:
        pass   # gone already: what we wanted


async def sweep_manifests(state, report):
    """Delete the candidates' revisions, tag history entries and referrers-index entries
    (never ``current`` links: a candidate is untagged). Only the offline command gets here
    with candidates, so nothing re-tags them meanwhile."""
    by_repository = {}
    for candidate in state.manifest_candidates:
        by_repository.setdefault(candidate.repository, []).append(candidate)
    for name, candidates in by_repository.items():
        history = await tag_history(state, name)
        for candidate in candidates:
            report.manifest_eligible(name, candidate.digest, history.get(candidate.digest, []))
            if state.options.dry_run:
                continue
            for tag in history.get(candidate.digest, []):
                await _delete_quietly(state, posixpath.dirname(paths.tag_index_link(name, tag, candidate.digest)))
            revision = paths.revision_dir(name, candidate.digest)
            report.deleting("manifest", revision)
            await _delete_quietly(state, revision)
            if candidate.subject is not None:
                entry = paths.referrer_entry(name, candidate.subject, candidate.digest)
                await _delete_quietly(state, posixpath.dirname(entry))
            await state.invalidate("manifest", name, candidate.digest)


async def eligible_blobs(state):
    """``[(digest, size)]`` of blobs neither marked nor young, in path order; the 256 fan-out
    directories of each algorithm are listed in parallel."""
    driver = state.driver
    try:
        algorithms = await state.call(driver.list, paths.BLOBS)
    except PathNotFoundError:
        return []
    fanouts = []
    for algorithm_dir in algorithms:
        try:
            fanouts.extend(await state.call(driver.list, algorithm_dir))
        except PathNotFoundError:
            continue

    async def scan(fanout):
        algorithm = fanout.split("/")[-2]
        found = []
        try:
            blob_dirs = await state.call(driver.list, fanout)
        except PathNotFoundError:
            return found
        for blob_dir in blob_dirs:
            digest = f"{algorithm}:{blob_dir.rpartition('/')[2]}"
            if digest in state.marked:
                continue
            try:
                info = await state.call(driver.stat, blob_dir + "/data")
            except PathNotFoundError:
                continue   # registry:2 enumerates only blob dirs holding data
            if not info.is_dir and not state.is_young(info.modtime):
                found.append((digest, info.size))
        return found

    per_fanout = await gather([lambda f=f: scan(f) for f in fanouts], limit=state.options.concurrency)
    return [blob for blobs in per_fanout for blob in blobs]


async def _untouched(state, path):
    """Not modified since the mark (modtime still outside the grace period)."""
    try:
        info = await state.call(state.driver.stat, path)
    except PathNotFoundError:
        return True
    return not state.is_young(info.modtime)


async def _guarded_delete(state, digest, check_path, delete_path, kind, name, report, linked=()):
    """Delete *delete_path* unless a push recorded *digest* (the guard) or *check_path* was
    modified since the mark; True if deleted. The invalidation hook hears of it for *name*
    and for each repository in *linked* (those whose cached descriptor of a blob is now wrong)."""
    guard = state.guard
    if guard is not None and not guard.claim(digest, state.since):
        report.kept(kind, name, digest)
        return False
    try:
        if not await _untouched(state, check_path):
            report.kept(kind, name, digest)
            return False
        report.deleting(kind, delete_path)
        await _delete_quietly(state, delete_path)
        await state.invalidate(kind, name, digest)
        for repository in linked:
            await state.invalidate(kind, repository, digest)
        return True
    finally:
        if guard is not None:
            guard.release(digest)


async def sweep_blobs(state, blobs, report):
    """Delete *blobs*; returns the bytes freed (would be freed, in a dry run)."""
    for digest, _ in blobs:
        report.blob_eligible(digest)
    if state.options.dry_run:
        return sum(size for _, size in blobs)

    # Every repository linking an unmarked blob has that link among the layer candidates.
    linked = {}
    for name, digest in state.layer_candidates:
        linked.setdefault(digest, []).append(name)

    async def one(digest, size):
        deleted = await _guarded_delete(state, digest, paths.blob_data(digest), paths.blob_dir(digest),
                                        "blob", None, report, linked.get(digest, ()))
        report.swept(deleted)
        return size if deleted else 0

    return sum(await gather([lambda b=b: one(*b) for b in blobs], limit=state.options.concurrency))


async def sweep_layer_links(state, report):
    links = [(name, digest) for name, digest in state.layer_candidates if digest not in state.marked]
    for name, digest in links:
        report.layer_eligible(name, digest)
    if state.options.dry_run:
        return len(links)

    async def one(name, digest):
        link = paths.layer_link(name, digest)
        return await _guarded_delete(state, digest, link, link, "layer", name, report)

    return sum(await gather([lambda x=x: one(*x) for x in links], limit=state.options.concurrency))
