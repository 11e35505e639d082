"""``distregistry`` console command, shaped like registry:2's CLI.

``distregistry serve [CONFIG]`` runs the daemon in the foreground through twistd (so it
is exactly what ``twistd -n distregistry -c CONFIG`` runs); ``distregistry config check
[CONFIG]`` validates a config file and prints its warnings; ``distregistry webhook-echo
--port N`` prints the notification events sent to it; ``distregistry garbage-collect``
is registry:2's offline GC (``distregistry.gc.command``).
"""

import argparse
import sys


def _serve(args):
    from twisted.scripts.twistd import run

    argv = ["twistd", "--nodaemon", "--pidfile=", "distregistry"]
    if args.config:
        argv += ["--config", args.config]
    sys.argv = argv
    run()
    return 0


def _check(args):
    from distregistry.config import Config, ConfigError

    try:
        cfg = Config.load(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{cfg.source}: ok")
    return 0


def _webhook_echo(args):
    from distregistry.notifications.echo import run

    return run(args.port, args.interface, args.status)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="distregistry", description="OCI Distribution registry")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the registry in the foreground")
    serve.add_argument("config", nargs="?", help="config.yml (default: $REGISTRY_CONFIGURATION_PATH, "
                                                 "else the embedded default)")
    serve.set_defaults(func=_serve)
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("config", nargs="?")
    check.set_defaults(func=_check)
    echo = sub.add_parser("webhook-echo", help="a webhook receiver printing the events it gets")
    echo.add_argument("--port", type=int, required=True)
    echo.add_argument("--interface", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    echo.add_argument("--status", type=int, default=200, help="answer with this status (e.g. 500 to try retries)")
    echo.set_defaults(func=_webhook_echo)
    from distregistry.gc import command as gc_command

    gc_command.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
