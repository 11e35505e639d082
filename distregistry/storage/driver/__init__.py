"""Storage drivers: the contract is in ``base``, the implementations in sibling modules,
``factory.create`` picks one by its config name.

This module holds the one traversal every driver shares (registry:2 keeps its
``WalkFallback`` in the driver package root too), so walk order, ``SkipDir`` and
start-after semantics cannot drift between drivers.
"""

from bisect import bisect_left

from twisted.internet.defer import Deferred

from distregistry.storage.driver.base import PathNotFoundError, SkipDir


def _is_skip(result):
    return result is SkipDir or isinstance(result, SkipDir)


async def walk_tree(children, path, visit, start_after=None, prefetch=None):
    """Depth-first walk below *path*, calling ``visit(FileInfo)`` for every entry.

    *children(dir_path)* returns a Deferred[list[FileInfo]] of the direct children
    (PathNotFoundError if absent). Siblings are visited in name order and a directory's
    subtree right after the directory itself, which is registry:2's catalog order
    (``a``, ``a/b``, ``a-b``, ``ab``). *visit* may return a Deferred; raising or
    returning SkipDir on a directory skips its subtree, on a file it is a no-op
    (registry:2 3.x). Any other exception stops the walk and propagates.

    A listing may be the first piece of a directory: then its ``rest`` attribute is a
    callable returning a Deferred of the next piece (children sorting after this piece's),
    called only once the walk nears this piece's end, so a big directory is not read
    whole for a walk that stops early.

    *start_after* (registry:2 3.x's ``WithStartAfterHint``): entries up to that path in
    walk order are neither visited nor entered; its ancestors and the path itself are
    entered without being visited, as registry:2's WalkFallback does.

    *prefetch*: how many sibling directories to ask for ahead (default PREFETCH).
    """
    await _walk_dir(children, path, visit, prefetch or PREFETCH, top=True, hint=start_hint(path, start_after))


def start_hint(path, start_after):
    """The *start_after* a walk of *path* goes by: None when it is not below *path*, or holds
    a NUL, which would sort below '/' and break the component-wise comparison (no driver
    path holds one; a hint may always be ignored)."""
    prefix = "" if path == "/" else path
    if start_after is None or "\x00" in start_after or not start_after.startswith(prefix + "/"):
        return None
    return start_after


# Directories whose listing is requested ahead of the walk reaching them: a catalog walk
# enters every repository directory, and one storage round trip at a time left the
# filesystem driver's threads idle most of the time.
PREFETCH = 16


async def _walk_dir(children, path, visit, prefetch, top, listing=None, hint=None):
    try:
        piece = await (listing if listing is not None else children(path))
    except PathNotFoundError:
        if top:
            raise
        # Removed between being listed and being entered: registry:2 ignores it too.
        return
    while piece is not None:
        piece = await _walk_piece(children, path, visit, prefetch, piece, hint)
        hint = None   # later pieces sort after it


async def _walk_piece(children, path, visit, prefetch, piece, hint):
    """Walk one listing piece and return the directory's next one: None when there are
    no more, or the directory has gone since."""
    rest = getattr(piece, "rest", None)
    # Siblings share the parent prefix, so sorting full paths sorts by name.
    entries = sorted(piece, key=lambda i: i.path)
    start, enter_first, below = 0, False, None
    if hint is not None:
        # hint = <path>/<name>[/<rest>]: siblings before <name> hold nothing after the hint;
        # <name> itself is entered (with the rest of the hint) but not visited.
        prefix = "" if path == "/" else path
        name, sep, _ = hint[len(prefix) + 1:].partition("/")
        at = f"{prefix}/{name}"
        start = bisect_left(entries, at, key=lambda i: i.path)
        if start < len(entries) and entries[start].path == at:
            enter_first = entries[start].is_dir
            below = hint if sep else None
            if not enter_first:
                start += 1
    ahead = {}        # index -> Deferred listing of a later sibling directory
    asked = start     # entries before this index have been considered for prefetching
    following = None  # the next piece, asked for once prefetching reaches this one's end
    try:
        for index in range(start, len(entries)):
            info = entries[index]
            if enter_first and index == start:
                result, sub_hint = None, below
            else:
                sub_hint = None
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
                for later in range(max(asked, index + 1), min(index + 1 + prefetch, len(entries))):
                    if entries[later].is_dir:
                        ahead[later] = children(entries[later].path)
                asked = max(asked, index + 1 + prefetch)
                if asked >= len(entries) and rest is not None and following is None:
                    following = rest()
                await _walk_dir(children, info.path, visit, prefetch, top=False, listing=ahead.pop(index, None),
                                hint=sub_hint)
            else:
                _abandon(ahead.pop(index, None))
        if rest is None:
            return None
        try:
            return await (following if following is not None else rest())
        except PathNotFoundError:
            return None
        finally:
            following = None
    finally:
        for d in ahead.values():   # the walk stopped early
            _abandon(d)
        _abandon(following)


def _abandon(listing):
    """A listing requested ahead that the walk will not use: its failure is nobody's."""
    if listing is not None:
        listing.addErrback(lambda _: None)
