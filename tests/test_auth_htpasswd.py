"""auth.htpasswd (and auth.silly) against the running daemon: skopeo over TLS with
credentials, registry:2's challenges, reload, refusing uploads before their body, timing."""

import base64
import hashlib
import json
import re
import socket
import statistics
import subprocess
import time

import pytest

from tests.support.daemon import Daemon
from tests.support.pki import PKI
from tests.support.secure import SecureDaemon

pytestmark = pytest.mark.e2e

REALM = "test realm"


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def htpasswd_line(user, password, cost=5):
    """What an operator runs: ``htpasswd -Bbn user password`` (-C: bcrypt cost, default 5)."""
    return subprocess.run(["htpasswd", "-Bbn", "-C", str(cost), user, password], capture_output=True, text=True,
                          check=True).stdout.strip() + "\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    path = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    path.write_text(htpasswd_line("alice", "s3cret") + htpasswd_line("bob", "hunter2"))
    return path


def auth_config(path):
    return {"auth": {"htpasswd": {"realm": REALM, "path": str(path)}}}


@pytest.fixture(scope="module")
def reg(tmp_path_factory, pki, users):
    base = tmp_path_factory.mktemp("htpasswd-reg")
    cfg = auth_config(users)
    cfg["http"] = {"tls": {"certificate": str(pki.server_cert), "key": str(pki.server_key)}}
    d = SecureDaemon("distregistry", root=base / "data", workdir=base / "run", extra_config=cfg,
                     ca_file=str(pki.ca)).start()
    yield d
    d.stop()


def test_skopeo_with_creds_over_tls(reg, pki, skopeo, e2e_images, tmp_path):
    certs = str(pki.cert_dir())
    dest = reg.docker_ref("team/app", "v1")
    skopeo.run("copy", "--quiet", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds", "alice:s3cret",
               e2e_images.small.ref, dest)
    p = skopeo.run("inspect", "--raw", "--cert-dir", certs, "--creds", "bob:hunter2", dest)
    assert json.loads(p.stdout)["schemaVersion"] == 2
    bad = skopeo.run("copy", "--quiet", "--dest-cert-dir", certs, "--dest-creds", "alice:wrong",
                     e2e_images.small.ref, reg.docker_ref("team/app", "v2"), check=False)
    assert bad.returncode != 0
    assert "401" in bad.stderr or "unauthorized" in bad.stderr.lower(), bad.stderr
    anonymous = skopeo.run("inspect", "--raw", "--cert-dir", certs, dest, check=False)
    assert anonymous.returncode != 0
    assert reg.request("HEAD", "/v2/team/app/manifests/v2", headers=basic("alice", "s3cret")).status == 404


def test_challenge_matches_registry2(tmp_path, users):
    """The same 401 as Debian's registry:2 2.8.2: header byte for byte, the same JSON."""
    answers = {}
    for kind in ("distregistry", "go"):
        d = SecureDaemon(kind, root=tmp_path / kind / "data", workdir=tmp_path / kind / "run",
                         extra_config=auth_config(users)).start()
        try:
            answers[kind] = [(r.status, r.header("WWW-Authenticate"), r.header("Content-Type").split(";")[0], r.json())
                             for r in (d.request("GET", "/v2/"),
                                       d.request("GET", "/v2/a/b/tags/list"),
                                       d.request("GET", "/v2/", headers=basic("alice", "nope")),
                                       d.request("GET", "/v2/", headers={"Authorization": "Bearer x"}))]
        finally:
            d.stop()
    assert answers["distregistry"] == answers["go"]
    status, challenge, _, body = answers["distregistry"][1]
    assert (status, challenge) == (401, 'Basic realm="test realm"')
    assert body == {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                "detail": [{"Type": "repository", "Class": "", "Name": "a/b", "Action": "pull"}]}]}


def raw_upload_headers(port, headers, length=1 << 30, tls=None):
    """Send only the headers of a 1 GiB monolithic upload; return (seconds, response bytes).
    *tls*: an ssl.SSLContext to speak TLS with."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            (tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw) as s:
        head = (f"POST /v2/x/blobs/uploads/?digest=sha256:{'0' * 64} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {length}\r\nContent-Type: application/octet-stream\r\n"
                "Expect: 100-continue\r\n")
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        t0 = time.monotonic()
        s.sendall(head.encode() + b"\0" * 4096)   # a little body with the headers
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return time.monotonic() - t0, data


def test_uploads_are_refused_before_their_body(tmp_path, users):
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
                     extra_config=auth_config(users)).start()
    try:
        for headers in ({}, basic("alice", "wrong"), basic("nobody", "x")):
            seconds, data = raw_upload_headers(d.port, headers)
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401 "), data
            assert b"100 Continue" not in data
            assert b'WWW-Authenticate: Basic realm="test realm"' in head
            assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
            assert seconds < 10   # answered with 1 GiB never sent
        # Nothing reached storage: no upload session was started.
        assert not list((tmp_path / "data").rglob("_uploads"))
        # A body that arrives whole with the headers waits for the (threaded) decision.
        body = b"in one packet"
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        with socket.create_connection(("127.0.0.1", d.port), timeout=20) as s:
            auth = basic("alice", "s3cret")["Authorization"]
            s.sendall((f"POST /v2/x/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Length: {len(body)}\r\nAuthorization: {auth}\r\n\r\n").encode() + body)
            assert s.recv(4096).startswith(b"HTTP/1.1 201 ")
        assert d.request("HEAD", f"/v2/x/blobs/{digest}", headers=basic("bob", "hunter2")).status == 200
        # The right password gets the 100 Continue and the upload goes on.
        with socket.create_connection(("127.0.0.1", d.port), timeout=20) as s:
            body = b"hello"
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            auth = basic("alice", "s3cret")["Authorization"]
            s.sendall((f"POST /v2/x/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       f"Expect: 100-continue\r\nAuthorization: {auth}\r\n\r\n").encode())
            assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(body)
            assert s.recv(4096).startswith(b"HTTP/1.1 201 ")
    finally:
        d.stop()


def stream_1gib_put(port, tls=None):
    """Send a 1 GiB PUT without credentials as fast as the daemon takes it; the bytes sent
    before the connection broke."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            (tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw) as s:
        s.sendall((f"PUT /v2/x/blobs/uploads/u?digest=sha256:{'0' * 64} HTTP/1.1\r\nHost: x\r\n"
                   f"Content-Length: {1 << 30}\r\n\r\n").encode())
        chunk = b"\0" * (1 << 16)
        try:
            while sent < 1 << 30:
                sent += s.send(chunk)
        except OSError:   # reset/broken pipe: the daemon closed the connection
            pass
    return sent


def test_a_stranger_streaming_1gib_is_cut_off(tmp_path, users, reg):
    """The client keeps sending: the daemon answers 401 and closes, so only what the socket
    buffers hold is ever sent, not the 1 GiB (plain HTTP and TLS)."""
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
                     extra_config=auth_config(users)).start()
    try:
        for name, port, tls in (("http", d.port, None), ("https", reg.port, reg.ssl_context())):
            sent = stream_1gib_put(port, tls)
            print(f"unauthenticated 1 GiB PUT over {name}: {sent / (1 << 20):.1f} MiB sent before the daemon closed")
            assert sent < 64 << 20, f"{name}: {sent} bytes accepted before the connection was closed"
        assert "refused PUT /v2/x/blobs/uploads/u" in d.log_text()
    finally:
        d.stop()


def test_refused_before_the_body_over_tls(reg):
    for headers in ({}, basic("alice", "wrong")):
        seconds, data = raw_upload_headers(reg.port, headers, tls=reg.ssl_context())
        assert data.startswith(b"HTTP/1.1 401 "), data
        assert b"100 Continue" not in data


def test_file_is_reloaded_and_non_bcrypt_entries_are_refused(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text(htpasswd_line("alice", "one"))
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
                     extra_config=auth_config(path)).start()
    try:
        assert d.request("GET", "/v2/", headers=basic("alice", "one")).status == 200
        md5 = subprocess.run(["htpasswd", "-mbn", "carol", "pw"], capture_output=True, text=True,
                             check=True).stdout.strip()
        path.write_text(htpasswd_line("alice", "two") + "# comment\n\n" + md5 + "\n" + htpasswd_line("dave", "pw"))
        assert d.request("GET", "/v2/", headers=basic("alice", "two")).status == 200
        assert d.request("GET", "/v2/", headers=basic("alice", "one")).status == 401
        assert d.request("GET", "/v2/", headers=basic("dave", "pw")).status == 200
        assert d.request("GET", "/v2/", headers=basic("carol", "pw")).status == 401
        assert "line 4: user 'carol' has a non-bcrypt hash" in d.log_text()
        path.write_text("no colon here\n")
        r = d.request("GET", "/v2/", headers=basic("alice", "two"))
        # registry:2: a broken file is a 400 (with an empty body; here UNKNOWN's JSON)
        assert (r.status, r.json()["errors"][0]["code"]) == (400, "UNKNOWN")
        assert "Traceback" not in d.log_text()
    finally:
        d.stop()


def test_missing_file_is_created_with_a_logged_password(tmp_path):
    path = tmp_path / "auth" / "htpasswd"
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
                     extra_config=auth_config(path)).start()
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        password = re.search(r'user \\"docker\\", password (\S+)"', d.log_text()).group(1)
        assert d.request("GET", "/v2/", headers=basic("docker", password)).status == 200
    finally:
        d.stop()


def test_unknown_users_cost_what_wrong_passwords_cost(tmp_path):
    # cost 10 (~50 ms a compare) so that bcrypt, not HTTP, is what is measured
    users = tmp_path / "htpasswd"
    users.write_text(htpasswd_line("alice", "s3cret", cost=10) + htpasswd_line("bob", "x", cost=10))
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
                     extra_config=auth_config(users)).start()
    try:
        def timed(headers):
            t0 = time.perf_counter()
            assert d.request("GET", "/v2/", headers=headers).status == 401
            return time.perf_counter() - t0

        timed(basic("alice", "warm-up"))
        unknown, wrong = [], []
        for i in range(25):   # interleaved, so load on the machine hits both alike
            unknown.append(timed(basic(f"nobody{i}", "x")))
            wrong.append(timed(basic("alice", f"wrong{i}")))
        ratio = statistics.median(unknown) / statistics.median(wrong)
        print(f"median unknown {statistics.median(unknown) * 1e3:.1f} ms, wrong password "
              f"{statistics.median(wrong) * 1e3:.1f} ms, ratio {ratio:.3f}")
        assert 0.8 <= ratio <= 1.2
    finally:
        d.stop()


def test_silly_auth(tmp_path):
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
                     extra_config={"auth": {"silly": {"realm": "silly-realm", "service": "silly-service"}}}).start()
    try:
        r = d.request("POST", "/v2/foo/bar/blobs/uploads/")
        assert r.status == 401
        assert r.header("WWW-Authenticate") == ('Bearer realm="silly-realm",service="silly-service",'
                                                'scope="repository:foo/bar:pull repository:foo/bar:push"')
        assert d.request("GET", "/v2/", headers={"Authorization": "anything"}).status == 200
    finally:
        d.stop()


def test_plain_daemon_still_needs_no_auth(tmp_path):
    d = Daemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run").start()
    try:
        assert d.request("GET", "/v2/").status == 200
    finally:
        d.stop()
