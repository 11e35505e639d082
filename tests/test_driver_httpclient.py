"""The HTTP helper of the cloud drivers, against small real servers on loopback."""

from twisted.internet import defer, protocol, reactor

from distregistry.storage.driver.httpclient import HTTPPool

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class _DropsSecondRequest(protocol.Protocol):
    """Answers the first request of each connection and closes it, unanswered, on the second:
    what a client sees when a server closes a kept-alive connection as it is reused."""

    def connectionMade(self):
        self.factory.connections += 1
        self.requests = 0
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            self.buffer = self.buffer[length:]
            self.requests += 1
            if self.requests == 1:
                self.transport.write(OK)
            else:
                self.transport.loseConnection()


async def test_a_request_on_a_connection_the_server_dropped_is_sent_again():
    factory = protocol.ServerFactory.forProtocol(_DropsSecondRequest)
    factory.connections = 0
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    pool = HTTPPool(reactor)
    url = f"http://127.0.0.1:{port.getHost().port}/x"
    try:
        response, body = await pool.request("PUT", url, data=b"first")
        assert (response.code, body) == (200, b"ok")
        # Reuses the pooled connection, which the server drops; answered on a new one.
        response, body = await pool.request("PUT", url, data=b"second")
        assert (response.code, body) == (200, b"ok")
        assert factory.connections == 2
    finally:
        await pool.close()
        await defer.maybeDeferred(port.stopListening)
