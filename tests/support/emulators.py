"""Object-store emulators the cloud-driver tests start and stop themselves, on free loopback
ports: Azurite (npm, installed into ./node_modules by scripts/test) and gcp-storage-emulator
(PyPI, in the test requirements)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"

# Azurite's well-known development account (public, documented; accepted by Azurite only).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port, proc, log, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"emulator did not listen on {port} within {timeout}s")


class Emulator:
    def __init__(self, argv, port, workdir, env=None):
        self.port = port
        self.log = Path(workdir) / "emulator.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._logf, stderr=subprocess.STDOUT, cwd=workdir,
                                     env={**os.environ, **(env or {})})
        _wait_listening(port, self.proc, self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()


def start_azurite(workdir):
    port = free_port()
    emu = Emulator([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir),
                    "--silent", "--skipApiVersionCheck", "--disableTelemetry"], port, workdir)
    emu.serviceurl = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    return emu


def start_gcs(workdir, bucket):
    # In memory: on disk it keeps each object as a file named by its key, so it cannot hold
    # a key below another key ("a" and "a/b"), which GCS can.
    port = free_port()
    emu = Emulator([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
                    "--default-bucket", bucket, "--in-memory"], port, workdir, env={"STORAGE_BASE": str(workdir)})
    emu.endpoint = f"http://127.0.0.1:{port}"
    return emu


def service_account():
    """(service-account key info, RSA private key): a freshly generated key in the JSON form
    Google issues, for signing tests (the GCS emulator does not check signatures)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": pem,
            "client_email": "registry@p.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token"}
    return info, key
