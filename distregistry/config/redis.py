"""The ``redis`` section: the server the blob-descriptor cache uses.

registry:2 2.8's keys (``addr``, ``password``, ``db``, ``dialtimeout``, ``readtimeout``,
``writetimeout``, ``pool.{maxidle,maxactive,idletimeout}``, ``tls``) and the 3.x spelling of
the same things (``addrs`` with one address, ``username``, ``poolsize``). Cluster and
sentinel set-ups (several ``addrs``, ``mastername``) are not supported yet.
"""

import attr

DEFAULT_PORT = 6379
DEFAULT_POOL = 10
# registry:2 has no timeout unless one is set; here every call has one, because txredisapi
# waits for a reconnect forever while Redis is down (shared/reference/twisted.md 1.4).
DEFAULT_TIMEOUT = 1.0


@attr.s(frozen=True, slots=True)
class RedisConfig:
    host = attr.ib()
    port = attr.ib()
    username = attr.ib()  # "" without ACL users
    password = attr.ib()
    db = attr.ib()
    dialtimeout = attr.ib()  # seconds
    readtimeout = attr.ib()  # seconds: the timeout of every command
    writetimeout = attr.ib()
    poolsize = attr.ib()
    tls_certificate = attr.ib()  # paths, "" when unset; any of the three turns TLS on
    tls_key = attr.ib()
    tls_rootcas = attr.ib()  # list of paths

    @property
    def tls(self):
        return bool(self.tls_certificate or self.tls_key or self.tls_rootcas)

    @classmethod
    def parse(cls, root):
        node = root["redis"]
        if not node.as_mapping():
            return None
        addrs = node["addrs"].as_list()
        if len(addrs) > 1:
            raise node["addrs"].error("several addresses (a Redis cluster) are not supported yet")
        addr_node = addrs[0] if addrs else node["addr"]
        addr = addr_node.as_str("")
        if not addr:
            raise node.error("addr is required")
        host, colon, port = addr.rpartition(":")
        if not colon:
            host, port = addr, str(DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise addr_node.error(f'expected host:port such as "localhost:6379", got {addr!r}')
        pool = node["pool"]
        poolsize = node["poolsize"].as_int(0, minimum=0) or pool["maxactive"].as_int(0, minimum=0) or DEFAULT_POOL
        # pool.maxidle / pool.idletimeout: txredisapi keeps its pool's connections open.
        pool["maxidle"].as_int(0, minimum=0)
        pool["idletimeout"].as_duration(0)
        tls = node["tls"]
        certificate, key = tls["certificate"].as_str(""), tls["key"].as_str("")
        if bool(certificate) != bool(key):
            raise tls.error("certificate and key go together")
        return cls(
            host=host.strip("[]"),
            port=int(port),
            username=node["username"].as_str(""),
            password=node["password"].as_str(""),
            db=node["db"].as_int(0, minimum=0),
            dialtimeout=node["dialtimeout"].as_duration(0) or DEFAULT_TIMEOUT,
            readtimeout=node["readtimeout"].as_duration(0) or DEFAULT_TIMEOUT,
            writetimeout=node["writetimeout"].as_duration(0) or DEFAULT_TIMEOUT,
            poolsize=poolsize,
            tls_certificate=certificate,
            tls_key=key,
            tls_rootcas=[n.as_str("") for n in tls["rootcas"].as_list()],
        )
