"""Storage drivers: the contract is in ``base``, the implementations in sibling modules,
``factory.create`` picks one by its config name.

This module holds the one traversal every driver shares (registry:2 keeps its
``WalkFallback`` in the driver package root too), so walk order and ``SkipDir``
semantics cannot drift between drivers.
"""

from twisted.internet.defer import Deferred

from distregistry.storage.driver.base import PathNotFoundError, SkipDir


def _is_skip(result):
    return result is SkipDir or isinstance(result, SkipDir)


async def walk_tree(children, path, visit):
    """Depth-first walk below *path*, calling ``visit(FileInfo)`` for every entry.

    *children(dir_path)* returns a Deferred[list[FileInfo]] of the direct children
    (PathNotFoundError if absent). Siblings are visited in name order and a directory's
    subtree right after the directory itself, which is registry:2's catalog order
    (``a``, ``a/b``, ``a-b``, ``ab``). *visit* may return a Deferred; raising or
    returning SkipDir on a directory skips its subtree, on a file it is a no-op
    (registry:2 3.x). Any other exception stops the walk and propagates.
    """
    await _walk_dir(children, path, visit, top=True)


# Directories whose listing is requested ahead of the walk reaching them: a catalog walk
# enters every repository directory, and one storage round trip at a time left the
# filesystem driver's threads idle most of the time.
PREFETCH = 16


async def _walk_dir(children, path, visit, top, listing=None):
    try:
        entries = await (listing if listing is not None else children(path))
    except PathNotFoundError:
        if top:
            raise
        # Removed between being listed and being entered: registry:2 ignores it too.
        return
    # Siblings share the parent prefix, so sorting full paths sorts by name.
    entries = sorted(entries, key=lambda i: i.path)
    ahead = {}   # index -> Deferred listing of a later sibling directory
    try:
        for index, info in enumerate(entries):
            try:
                result = visit(info)
                if isinstance(result, Deferred):
                    result = await result
            except SkipDir:
                _abandon(ahead.pop(index, None))
                continue
            if info.is_dir and not _is_skip(result):
                # Only once a directory is entered: directories skipped before the walk
                # gets anywhere (a catalog page after ``last``) are never listed.
                for later in range(index + 1, min(index + 1 + PREFETCH, len(entries))):
                    if entries[later].is_dir and later not in ahead:
                        ahead[later] = children(entries[later].path)
                await _walk_dir(children, info.path, visit, top=False, listing=ahead.pop(index, None))
            else:
                _abandon(ahead.pop(index, None))
    finally:
        for d in ahead.values():   # the walk stopped early
            _abandon(d)


def _abandon(listing):
    """A listing requested ahead that the walk will not use: its failure is nobody's."""
    if listing is not None:
        listing.addErrback(lambda _: None)
