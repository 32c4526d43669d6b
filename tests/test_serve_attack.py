"""A very small run of ``benchmarks/attack.py``'s attack (idle connections + slow bodies + a request burst
together) against a real server on 127.0.0.1: the health probe and real requests keep being answered, and the
idle and slow connections are closed by their timeouts. The full run (1,000 idle, 100 slow) is in
docs/serving.md; this one checks the script and the behaviour, not the latency figures.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra (pip install -e '.[serve]')")
pytest.importorskip("httpx", reason="the server tests need httpx")

from test_serve import checkpoints, running_server  # noqa: E402,F401 (checkpoints: a fixture)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from attack import SLOW_HEAD, attack, first_bytes  # noqa: E402


def test_a_small_attack_leaves_the_server_answering(checkpoints):
    idle_timeout, read_timeout = 0.5, 1.0
    with running_server(checkpoints["sequence_classification"], idle_timeout_s=idle_timeout,
                        read_timeout_s=read_timeout) as (_, url):
        result = asyncio.run(attack(url, idle=20, slow=4, burst=2, seconds=3.0, baseline_seconds=1.0,
                                    probe_interval=0.1))
    probes, hits = result["probes"], result["attack"]
    for name in ("during/healthz", "during/request", "after/healthz"):
        assert probes[name]["n"] > 0 and probes[name]["errors"] == {}, (name, probes[name])
    assert hits["idle_closed_by_server"] >= 20  # each idle connection was closed at least once
    assert hits["idle_open_s"]["max"] < idle_timeout + 2.0
    assert hits["slow_answers"].get("408", 0) >= 4 and hits["slow_open_s"]["max"] < read_timeout + 3.0
    assert hits["burst_statuses"].get("200", 0) > 0 and hits["burst_refusals_without_json_retry_after"] == 0
    assert result["after"] == {"healthz": 200, "request": 200}
    assert result["server_counters"]['squeezebert_connections_closed_total{reason="idle"}'] >= 20


def test_an_answer_followed_by_a_reset_still_counts_as_that_answer():
    """The test above once saw slow clients' 408s counted as "closed": the server closed while a client's last
    bytes sat unread in its buffer, so its kernel sent RST instead of FIN, and ``reader.read()`` (which waits for
    EOF) raised and dropped the 408 it had received. A server that does exactly that, every time:"""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_then_reset() -> None:
        conn, _ = listener.accept()
        time.sleep(0.3)  # the client's bytes arrive and stay unread
        conn.sendall(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
        conn.close()  # with unread bytes: RST

    async def client(read: str) -> bytes:
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        answer = asyncio.ensure_future(first_bytes(reader) if read == "first_bytes" else reader.read())
        writer.write(SLOW_HEAD + b" ")
        await asyncio.sleep(0.8)  # the answer and the reset have both arrived
        try:
            return await answer
        except ConnectionResetError:
            return b"reset"
        finally:
            writer.close()

    seen = {}
    with listener:
        for read in ("read", "first_bytes"):
            server = threading.Thread(target=answer_then_reset)
            server.start()
            seen[read] = asyncio.run(client(read))
            server.join(10)
    assert seen["read"] == b"reset"  # what the attack's slow clients did: the answer is lost
    assert seen["first_bytes"].startswith(b"HTTP/1.1 408 ")
