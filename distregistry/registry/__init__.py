"""The registry storage layer: repositories, blobs, uploads, manifests, tags and referrers on a
storage driver, in registry:2's on-disk layout (``paths``).

Every public method returns a Deferred. The two helpers below are defined before the
submodules are imported because those submodules import them from here.
"""

import functools

from twisted.internet import defer


def deferred(fn):
    """Make an ``async def`` method return a Deferred, as the interfaces promise."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return defer.ensureDeferred(fn(*args, **kwargs))

    return wrapper


async def gather(calls, limit=16):
    """Run zero-argument async callables with at most *limit* in flight; results in order.

    The first failure is raised as itself (not wrapped in FirstError).
    """
    if len(calls) <= limit:   # no semaphore needed: most calls here are of two or three
        pending = [defer.maybeDeferred(call) for call in calls]
    else:
        semaphore = defer.DeferredSemaphore(limit)
        pending = [semaphore.run(lambda call=call: defer.ensureDeferred(call())) for call in calls]
    try:
        return await defer.gatherResults(pending, consumeErrors=True)
    except defer.FirstError as error:
        error.subFailure.raiseException()


from distregistry.registry.purge import purge_uploads  # noqa: E402
from distregistry.registry.registry import Registry, Repository, Validation  # noqa: E402

__all__ = ["Registry", "Repository", "Validation", "purge_uploads", "deferred", "gather"]
