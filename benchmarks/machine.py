"""What the benchmark reads from the machine: idleness (to gate rounds), the CPU time and
peak RSS of a server's process tree, and the physical references of this run (sha256 of
one core, loopback TCP, disk writes) that bound blob throughput for both servers."""

import hashlib
import os
import socket
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_WANTED = 0.90    # twisted.md's method: >= 90 % idle ...
IDLE_WINDOW = 2.0     # ... over 2 s


def _cpu_times():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]           # idle + iowait
    return idle, sum(fields[:8])           # without guest time, which user time already counts


def idle_fraction(window=IDLE_WINDOW):
    idle0, total0 = _cpu_times()
    time.sleep(window)
    idle1, total1 = _cpu_times()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_idle(timeout):
    """Wait until the machine was >= 90 % idle over 2 s; give up after *timeout* s.
    Returns (idle fraction of the last window, True if it was idle enough)."""
    deadline = time.monotonic() + timeout
    while True:
        idle = idle_fraction()
        if idle >= IDLE_WANTED or time.monotonic() >= deadline:
            return idle, idle >= IDLE_WANTED


def _children():
    """pid -> list of child pids, from /proc."""
    tree = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid):
    tree = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_seconds(pid):
    """utime+stime of *pid* and its live descendants (workers), plus reaped children."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])    # utime stime cutime cstime
    return total / CLK_TCK


def _status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss(pid):
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")    # resets VmHWM to the current RSS (proc(5))
        except OSError:
            pass


def peak_rss_mib(pid):
    """Sum of VmHWM over the process tree (one process unless workers are on)."""
    total = 0
    for p in process_tree(pid):
        try:
            total += _status_kib(p, "VmHWM")
        except OSError:
            pass
    return total / 1024


# -- physical references --------------------------------------------------------------------
def sha256_mbps(size):
    data = os.urandom(1 << 20)
    h = hashlib.sha256()
    t0 = time.perf_counter()
    for _ in range(size >> 20):
        h.update(data)
    return size / (time.perf_counter() - t0) / 1e6


def loopback_mbps(size):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def sink():
        conn, _ = listener.accept()
        buf = bytearray(1 << 20)
        with conn:
            while conn.recv_into(buf):
                pass

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    data = b"\0" * (1 << 20)
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as c:
        for _ in range(size >> 20):
            c.sendall(data)
    t.join()
    listener.close()
    return size / (time.perf_counter() - t0) / 1e6


def disk_write_mbps(directory, size):
    """Buffered writes then one fsync, as a blob upload does."""
    path = os.path.join(directory, "disk-probe")
    data = os.urandom(1 << 20)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t0
    os.unlink(path)
    return size / elapsed / 1e6
