"""Steady client load on a lab VIP, and what the client saw of it.

A small Python program runs inside the lab's client container and sends one
HTTP request at a time to the VIP, a new TCP connection each, starting one
every ``interval`` seconds (at once when the previous one was late), each
with ``timeout`` seconds for the whole exchange (curl's ``--max-time``).
With ``independent``, each request starts on time whether or not the ones
before it were answered (many clients rather than one: a client's own SYN
retransmissions then do not lengthen the gap it sees). It
prints one JSON line per request. The controller marks phases on the same
clock (the containers share this machine's clock), so each failure can be
put down to a step of what ran meanwhile.

Traffic goes only to the lab's own VIP, and is bounded in count and time
(``max_seconds``, ``max_requests``) whatever happens to the controller."""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

import dsrprov_lab as labmod

# Runs in the client container (Python 3 of the lab image, standard library).
# Reading stdin to its end is the stop signal: the controller closes it.
CLIENT = r"""
import json, socket, sys, threading, time
host, port, path, interval, timeout, max_s, max_n, independent = sys.argv[1:9]
port, interval, timeout, max_s, max_n = int(port), float(interval), float(timeout), float(max_s), int(max_n)
independent = independent == "1"
printing = threading.Lock()
# Independent requests: never more in flight than can time out meanwhile.
slots = int(timeout / interval) + 2
in_flight = threading.BoundedSemaphore(slots)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
request = ("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: dsrprov-load\r\n\r\n" % (path, host)).encode()

def one():
    deadline = time.time() + timeout
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except OSError as exc:
        # The client port names the connection in a capture or in IPVS's table.
        try:
            where = " (port %d)" % s.getsockname()[1]
        except OSError:
            where = ""
        s.close()
        if isinstance(exc, socket.timeout):
            return "fail", "connect timeout" + where
        return "fail", "connect: %s%s" % (exc.strerror or exc, where)
    chunks = []
    try:
        s.sendall(request)
        while True:
            left = deadline - time.time()
            if left <= 0:
                return "fail", "timeout"
            s.settimeout(left)
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    except socket.timeout:
        return "fail", "timeout"
    except OSError as exc:
        return "fail", "read: %s" % (exc.strerror or exc)
    finally:
        s.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        return "fail", "status %r" % status.decode("latin-1")[:40]
    return "ok", body.decode("latin-1").strip()[:40]

def timed(release):
    t0 = time.time()
    try:
        result, detail = one()
    finally:
        if release:
            in_flight.release()
    with printing:
        print(json.dumps([round(t0, 4), round(time.time(), 4), result, detail]), flush=True)

start = time.time()
n = 0
next_at = start
while not stop.is_set() and n < max_n and time.time() - start < max_s:
    now = time.time()
    if now < next_at:
        stop.wait(next_at - now)
        continue
    next_at = max(next_at + interval, time.time())
    if independent:
        in_flight.acquire()
        threading.Thread(target=timed, args=(True,), daemon=True).start()
    else:
        timed(False)
    n += 1
for _ in range(slots if independent else 0):  # the last answers, before the end
    in_flight.acquire()
"""


@dataclass
class Request:
    start: float
    end: float
    ok: bool
    detail: str  # the real server that answered, or why it failed


@dataclass
class LoadResult:
    requests: list[Request]
    marks: list[tuple[float, str]] = field(default_factory=list)  # (when, phase that starts then)

    @property
    def sent(self) -> int:
        return len(self.requests)

    @property
    def failed(self) -> list[Request]:
        return [r for r in self.requests if not r.ok]

    def longest_gap(self) -> float:
        """The longest time the client went without an answer: between the
        ends of two successive successful requests (or from the first
        request's start to the first success)."""
        ends = [min(r.start for r in self.requests)] if self.requests else []
        ends += sorted(r.end for r in self.requests if r.ok)
        return max((b - a for a, b in itertools.pairwise(ends)), default=0.0)

    def phase(self, when: float) -> str:
        """The phase that ran at ``when``."""
        current = "before"
        for at, label in self.marks:
            if at <= when:
                current = label
        return current

    def answered_by(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.requests:
            if r.ok:
                out[r.detail] = out.get(r.detail, 0) + 1
        return out

    def summary(self) -> str:
        failures = "; ".join(
            f"{time.strftime('%H:%M:%S', time.localtime(r.start))}.{int(r.start % 1 * 10)} {r.detail} "
            f"({self.phase(r.start)})"
            for r in self.failed
        )
        return f"{self.sent} sent, {len(self.failed)} failed, longest gap {self.longest_gap():.2f} s" + (
            f": {failures}" if failures else ""
        )


class Load:
    """``with Load(client, vip) as load: ...; result = load.result``."""

    def __init__(
        self,
        client: labmod.LabHost,
        vip: str,
        port: int = 80,
        path: str = "/",
        *,
        interval: float = 0.05,
        timeout: float = 2.0,
        max_seconds: float = 600,
        max_requests: int = 20000,
        independent: bool = False,
    ) -> None:
        if not client.container:
            raise labmod.LabError("the load runs in a lab client container")
        self.cmd = [
            "podman", "exec", "-i", client.container, "python3", "-u", "-c", CLIENT,
            vip, str(port), path, str(interval), str(timeout), str(max_seconds), str(max_requests),
            "1" if independent else "0",
        ]  # fmt: skip
        self.marks: list[tuple[float, str]] = []
        self.lines: list[str] = []
        self.result = LoadResult([])
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def mark(self, label: str) -> None:
        self.marks.append((time.time(), label))

    def __enter__(self) -> Load:
        self._proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=labmod.podman_env()
        )
        assert self._proc.stdout is not None
        out = self._proc.stdout
        self._reader = threading.Thread(target=lambda: self.lines.extend(out), daemon=True)
        self._reader.start()
        # Wait for the first answer, so that the load runs before the caller acts.
        deadline = time.time() + 10
        while not self.lines and time.time() < deadline and self._proc.poll() is None:
            time.sleep(0.05)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        proc = self._proc
        if proc is None:
            return self.result
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        self._proc = None
        requests = []
        for line in self.lines:
            try:
                t0, t1, result, detail = json.loads(line)
            except ValueError:
                continue
            requests.append(Request(t0, t1, result == "ok", detail))
        self.result = LoadResult(requests, list(self.marks))
        return self.result
