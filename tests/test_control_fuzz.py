"""Control-socket fuzz (issue 13): 100,000 seeded frames from an unprivileged
client — envelopes with random types and bodies (timestamps included),
undecodable payloads, wrong lengths, junk, and byte-level mutants of each
(hypothesis draws 10 frames per example, a seeded RNG makes 9 mutants of
each: drawing all 100,000 with hypothesis would take minutes) — against a
real svmgr. Afterwards
svmgr's services are untouched, its fds and RSS are back where they were
(give or take), it still answers, and its log stayed small (the errors are
summed up per uid)."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamod.ipc.schema import SCHEMA
from dynamod.testing import ConfigTree, Svmgr, public_dir, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fuzzing client is uid 65534 (setpriv)")

SEEDS = 10  # frames hypothesis draws per example
MUTANTS = 9  # byte-level mutants of each
BATCHES = 1000  # 1000 x 10 x (1 + 9) = 100,000 frames

# Reads [u32 length][frame] records from stdin and sends each frame to the
# control socket, reconnecting whenever the server closed the connection;
# answers are read and thrown away. Prints "frames N connections C".
SENDER = r'''
import os, socket, struct, sys
path = sys.argv[1]
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.setblocking(False)
    return s
def drain(s):
    try:
        while True:
            if not s.recv(1 << 16):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
s, frames, conns = connect(), 0, 1
inp = sys.stdin.buffer
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    frame = inp.read(struct.unpack("<I", head)[0])
    frames += 1
    s.setblocking(True)
    s.settimeout(10)
    try:
        s.sendall(frame)
        s.setblocking(False)
        alive = drain(s)
    except OSError:
        alive = False
    if not alive:
        s.close()
        s, conns = connect(), conns + 1
print(f"frames {frames} connections {conns}", flush=True)
'''

REQUEST_TYPES = sorted(SCHEMA.get("request", {})) or ["ListServices"]
keys = st.sampled_from(["id", "kind", "type", "body", "re", "name", "pid", "offset", "lines",
                        "jobs", "mode", "version", "client", "no_block"]) | st.text(max_size=6)
leaves = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats() | st.text(max_size=12) | st.binary(max_size=12)
    | st.builds(msgpack.Timestamp, st.integers(0, 2**33), st.integers(0, 999_999_999))
)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=3), max_leaves=8)
envelopes = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=-(2**63), max_value=2**64 - 1) | values,
        "kind": st.sampled_from(["request", "request", "event", "response"]) | values,
        "type": st.sampled_from(REQUEST_TYPES) | st.text(max_size=12),
        "body": st.dictionaries(keys, values, max_size=4) | values,
    },
    optional={"re": values},
)


def frame_of(raw: bytes) -> bytes:
    return b"DM" + struct.pack("<I", len(raw)) + raw


frames = st.one_of(
    envelopes.map(lambda env: frame_of(msgpack.packb(env, use_bin_type=True))),
    envelopes.map(lambda env: frame_of(msgpack.packb(env, use_bin_type=True))),
    envelopes.map(lambda env: frame_of(msgpack.packb(env, use_bin_type=True))),
    st.binary(max_size=64).map(frame_of),  # undecodable or not a map
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=32))
    .map(lambda t: b"DM" + struct.pack("<I", t[0]) + t[1]),  # lengths that lie
    st.binary(min_size=1, max_size=16),  # junk
)


def mutants(frame: bytes, rng: random.Random, n: int) -> list[bytes]:
    """Byte-level mutants of ``frame``; most keep a consistent header, so
    they reach the payload decoder and the schema rather than the framing."""
    out = []
    payload = frame[6:] if frame[:2] == b"DM" else frame
    for _ in range(n):
        body = bytearray(payload)
        op = rng.randrange(6)
        if op == 0 and body:  # flip bytes
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        elif op == 1 and body:  # cut short
            del body[rng.randrange(len(body)):]
        elif op == 2 and body:  # repeat a slice
            i = rng.randrange(len(body))
            body[i:i] = body[i:i + rng.randint(1, 8)]
        elif op == 3 and body:  # a timestamp (fixext 4, type -1) or a reserved byte
            i = rng.randrange(len(body))
            body[i:i + 1] = rng.choice([b"\xd6\xff\x00\x00\x00\x01", b"\xc1", b"\xc7\x0c\xff"])
        elif op == 4:  # the header lies about the length
            out.append(b"DM" + struct.pack("<I", rng.randrange(2**32)) + bytes(body))
            continue
        out.append(frame_of(bytes(body)))
    return out


def proc_figures(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def mgr() -> Iterator[Svmgr]:
    with public_dir() as work:
        tree = ConfigTree(work / "etc")
        for name in ("a", "b", "c"):
            tree.simple(name)
        (work / "run").mkdir(mode=0o755)
        with Svmgr(tree.root, work / "run") as m:
            for name in ("a", "b", "c"):
                m.wait_state(name, "running")
            yield m


def test_a_hundred_thousand_fuzzed_frames_leave_svmgr_as_it_was(mgr: Svmgr) -> None:
    before = {name: (s["state"], s["pid"]) for name, s in mgr.services().items()}
    rss0, fds0 = proc_figures(mgr.pid)
    log0 = len(mgr.log())
    sender = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         SENDER, mgr.socket],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False,
    )
    assert sender.stdin is not None and sender.stdout is not None
    sent = 0

    @settings(max_examples=BATCHES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(frames, min_size=SEEDS, max_size=SEEDS))
    def fuzz(seeds: list[bytes]) -> None:
        nonlocal sent
        rng = random.Random(b"".join(seeds))
        batch = [f for seed in seeds for f in (seed, *mutants(seed, rng, MUTANTS))]
        sender.stdin.write(b"".join(struct.pack("<I", len(f)) + f for f in batch))
        sent += len(batch)

    try:
        fuzz()
        sender.stdin.close()
        report = sender.stdout.readline().decode().split()
        assert sender.wait(120) == 0
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sent >= 100_000 and int(report[1]) == sent, report
    connections = int(report[3])
    # svmgr is unharmed: same services, same processes, still answering...
    after = {name: (s["state"], s["pid"]) for name, s in mgr.services().items()}
    assert after == before
    # ... its descriptors back once the closed connections are gone, its
    # memory about where it was...
    wait_until(lambda: proc_figures(mgr.pid)[1] <= fds0, "svmgr's fds back to where they were",
               context=mgr.log)
    rss1, _ = proc_figures(mgr.pid)
    print(f"\n{sent} frames over {connections} connections; RSS {rss0} -> {rss1} KiB; "
          f"log +{len(mgr.log()) - log0} bytes")
    assert rss1 < rss0 + 20 * 1024
    # ... and the flood of errors is summed up, not written line by line.
    log = mgr.log()[log0:]
    assert len(log) < 200_000, log[-3000:]
    assert "Traceback" not in log and "handler failed" not in log and "dispatch failed" not in log, log
