"""Keep-alive HEAD load with asyncio, for the HEAD scenario: wrk cannot do HEAD (it waits for
the Content-Length bytes a HEAD response never carries, and times out)."""

import asyncio
import time


async def _connection(port, request, deadline, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"HEAD answered {head[:200]!r}")
            counts.append(1)
    finally:
        writer.close()


async def _run(port, path, headers, connections, duration):
    request = (f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    counts = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, t0 + duration, counts) for _ in range(connections)))
    return len(counts), time.perf_counter() - t0


def head_load(port, path, headers, connections, duration):
    """(requests done, wall seconds) with *connections* keep-alive connections."""
    return asyncio.run(_run(port, path, headers, connections, duration))
