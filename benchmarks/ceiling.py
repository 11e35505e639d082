"""The small-request ceiling: a bare Klein ``GET /v2/`` -> ``{}`` route, no access log, with the
same worker count as distregistry (SO_REUSEPORT through distregistry.workers), so that the
manifest GET rate can be read against what Klein itself can do here.

``python -m benchmarks.ceiling PORT WORKERS`` (workers 1..N-1 get ``--worker``).
"""

import os
import subprocess
import sys

from klein import Klein
from twisted.internet import reactor
from twisted.web import server

from distregistry.workers import PARENT_ENV, ReusePortService, tie_to_parent


def make_site():
    app = Klein()

    @app.route("/v2/", methods=["GET"])
    def base(request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"2")
        return b"{}"

    site = server.Site(app.resource())
    site.log = lambda request: None
    site.noisy = False
    return site


def main(argv):
    port, workers = int(argv[0]), int(argv[1])
    is_worker = "--worker" in argv
    listener = ReusePortService(f"127.0.0.1:{port}", make_site(), reactor)
    listener.privilegedStartService()
    listener.startService()
    children = []
    if is_worker:
        tie_to_parent(reactor)
    else:
        env = dict(os.environ, **{PARENT_ENV: str(os.getpid())})
        children = [subprocess.Popen([sys.executable, "-m", "benchmarks.ceiling", str(port), "0", "--worker"],
                                     env=env) for _ in range(workers - 1)]
    # Stopped by SIGTERM (the runner) like the registries; the workers follow worker 0.
    reactor.addSystemEventTrigger("before", "shutdown", lambda: [c.terminate() for c in children])
    reactor.run()
    for c in children:
        c.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
