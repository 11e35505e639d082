"""Garbage collection: registry:2's mark and sweep, offline (``distregistry garbage-collect``)
and online (the ``storage.maintenance.gc`` service), on the registry layout over any driver.

``guard`` is imported by the registry layer itself (it records what pushes reference), so this
package imports nothing at load time: ``collect`` imports the registry layer.
"""
