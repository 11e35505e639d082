"""``distregistry webhook-echo``: a receiver for trying notifications out. It prints every
event it is sent, one JSON object per line on stdout, and answers 200 (or ``--status``)."""

import json
import sys

from twisted.internet import endpoints
from twisted.web import resource, server


class EchoResource(resource.Resource):
    isLeaf = True

    def __init__(self, out, status):
        super().__init__()
        self._out = out
        self._status = status

    def render_POST(self, request):
        body = request.content.read()
        try:
            events = json.loads(body)["events"]
        except (ValueError, KeyError, TypeError):
            print(f"not an event envelope ({len(body)} bytes)", file=sys.stderr, flush=True)
            request.setResponseCode(400)
            return b""
        for event in events:
            print(json.dumps(event, separators=(",", ":")), file=self._out, flush=True)
        request.setResponseCode(self._status)
        return b""


def run(port, interface, status, out=sys.stdout):
    from twisted.internet import reactor

    site = server.Site(EchoResource(out, status))
    site.noisy = False
    desc = f"tcp:{port}:interface={interface.replace(':', chr(92) + ':')}"
    d = endpoints.serverFromString(reactor, desc).listen(site)

    def listening(p):
        print(f"webhook-echo listening on http://{interface}:{p.getHost().port}/ (answering {status})",
              file=sys.stderr, flush=True)

    exit_code = []

    def failed(failure):
        print(f"webhook-echo: cannot listen on {interface}:{port}: {failure.value}", file=sys.stderr)
        exit_code.append(1)
        reactor.stop()

    d.addCallbacks(listening, failed)
    reactor.run()
    return exit_code[0] if exit_code else 0
