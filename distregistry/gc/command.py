"""``distregistry garbage-collect [--dry-run] [--delete-untagged] [--quiet] CONFIG``: registry:2's
offline command. Uses only the ``storage`` section (as registry:2); exits 1 with
``failed to garbage collect: ...`` on error."""

import sys

from twisted.internet import defer, task

from distregistry.config import Config, ConfigError
from distregistry.gc.collect import Report, garbage_collect, tty_progress
from distregistry.gc.state import Options
from distregistry.registry import Registry
from distregistry.storage.driver import factory


def add_parser(sub):
    gc = sub.add_parser("garbage-collect", help="delete blobs no manifest references (stop pushes first)")
    gc.add_argument("config", nargs="?", help="config.yml (default: $REGISTRY_CONFIGURATION_PATH)")
    gc.add_argument("-d", "--dry-run", action="store_true", help="only list what would be deleted")
    gc.add_argument("-m", "--delete-untagged", action="store_true",
                    help="also delete manifests no tag reaches (referrers of kept manifests stay)")
    gc.add_argument("-q", "--quiet", action="store_true", help="print the totals only")
    gc.set_defaults(func=run)


async def _collect(reactor, config, options, quiet, out):
    storage = config.storage
    driver = factory.create(storage.driver, storage.parameters, reactor, managed=True)
    registry = Registry(driver, clock=reactor)
    write = lambda line: print(line, file=out, flush=False)   # noqa: E731
    report = Report(None if quiet else write, write, None if quiet else tty_progress())
    try:
        await garbage_collect(registry, options, report)
    finally:
        await driver.close()
        out.flush()


def run(args):
    out = sys.stdout
    try:
        config = Config.load(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    outcome = []

    async def main(reactor):
        try:
            options = Options(dry_run=args.dry_run, delete_untagged=args.delete_untagged)
            await _collect(reactor, config, options, args.quiet, out)
            outcome.append(0)
        except Exception as error:   # registry:2 too: one line, exit 1, for any failure
            print(f"failed to garbage collect: {error}", file=sys.stderr)
            outcome.append(1)

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return exit_.code
    return outcome[0] if outcome else 1
