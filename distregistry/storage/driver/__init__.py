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


async def _walk_dir(children, path, visit, top):
    try:
        entries = await children(path)
    except PathNotFoundError:
        if top:
            raise
        # Removed between being listed and being entered: registry:2 ignores it too.
        return
    # Siblings share the parent prefix, so sorting full paths sorts by name.
    for info in sorted(entries, key=lambda i: i.path):
        try:
            result = visit(info)
            if isinstance(result, Deferred):
                result = await result
        except SkipDir:
            continue
        if info.is_dir and not _is_skip(result):
            await _walk_dir(children, info.path, visit, top=False)
