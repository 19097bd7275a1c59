"""Ableton Link clock (`tempo_source: link`): the musical variables from Link's beat and phase.

Single-clock tests keep Link disabled (no network traffic, and no tempo change reaches a real session on the
LAN). The two-peer tests join a session over UDP multicast on this machine's interfaces; they run one at a time
per machine (a lock file) and skip, without changing anyone's tempo, if a foreign Link peer is present.
"""

import fcntl
import importlib.util
import json
import math
import os
import queue
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from vj.audio import AudioError
from vj.audio.link import LinkClock, LinkError, musical_values
from vj.config.musical import MUSICAL_VARIABLES

needs_aalink = pytest.mark.skipif(
    importlib.util.find_spec("aalink") is None,
    reason="aalink (Ableton Link) is not installed: pip install 'aalink>=0.2.3,<0.3'",
)

LINK_GROUP = "224.76.78.75"  # Link's discovery multicast group (port 20808)
DEADLINE = 10.0  # seconds allowed for discovery and for a tempo to propagate (both take ~0.05 s here)


def wait_for(condition, timeout=DEADLINE, step=0.005):
    """Poll `condition` until it is true or `timeout` passes; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


def circular(a, b, period=1.0):
    """Distance between two phases."""
    d = (a - b) % period
    return min(d, period - d)


@pytest.fixture
def clock():
    c = LinkClock(bpm=120, beats_per_bar=4, beat_decay=0.1, enable=False)
    yield c
    c.close()


# ---- pure definitions ---------------------------------------------------------------------------------------


def test_pulse_is_one_at_the_beat_and_decays_with_beat_decay_seconds():
    # 120 BPM: a beat lasts 0.5 s, so beat_phase 0.2 is 0.1 s after the boundary = one time constant.
    assert musical_values(8.0, 120.0, 4, 0.1)["beat"] == 1.0
    assert musical_values(8.2, 120.0, 4, 0.1)["beat"] == pytest.approx(math.exp(-1))
    assert musical_values(8.4, 120.0, 4, 0.1)["beat"] == pytest.approx(math.exp(-2))
    # The same phase at half the tempo is twice as long after the beat.
    assert musical_values(8.2, 60.0, 4, 0.1)["beat"] == pytest.approx(math.exp(-2))
    assert musical_values(8.2, 120.0, 4, 0.2)["beat"] == pytest.approx(math.exp(-0.5))
    pulses = [musical_values(3 + k / 100, 120.0, 4, 0.1)["beat"] for k in range(100)]
    assert all(a > b for a, b in zip(pulses, pulses[1:]))
    # Just before the next beat (0.5 s = 5 time constants), then back to 1 on it.
    assert musical_values(3.999999, 120.0, 4, 0.1)["beat"] == pytest.approx(math.exp(-5), rel=1e-4)
    assert musical_values(4.0, 120.0, 4, 0.1)["beat"] == 1.0


def test_phases_and_count_from_the_beat():
    v = musical_values(9.5, 128.0, 4, 0.1)
    assert v == pytest.approx(
        {"beat": math.exp(-0.5 * 60 / 128 / 0.1), "beat_phase": 0.5, "bar_phase": 0.375, "bpm": 128.0, "beat_count": 9}
    )
    assert isinstance(v["beat_count"], int)
    assert musical_values(10.5, 128.0, 3, 0.1)["bar_phase"] == pytest.approx(0.5)  # beats_per_bar = 3
    assert musical_values(9.5, 128.0, 4, 0.1, origin=8)["beat_count"] == 1
    # Link's beat can be negative just after joining a session: phases wrap, the count stays at 0.
    v = musical_values(-0.8, 120.0, 4, 0.1)
    assert v["beat_phase"] == pytest.approx(0.2) and v["bar_phase"] == pytest.approx(0.8) and v["beat_count"] == 0
    # beat_count % beats_per_bar is the beat within the bar.
    for b in (0.0, 1.25, 2.5, 3.75, 4.0, 7.1, 13.9):
        v = musical_values(b, 120.0, 4, 0.1)
        assert v["beat_count"] % 4 == math.floor(v["bar_phase"] * 4 + 1e-9)


# ---- one clock (Link disabled) ------------------------------------------------------------------------------


@needs_aalink
def test_values_have_the_musical_variables(clock):
    v = clock.values()
    assert set(v) == set(MUSICAL_VARIABLES)
    assert isinstance(v["beat_count"], int)
    assert 0 < v["beat"] <= 1 and 0 <= v["beat_phase"] < 1 and 0 <= v["bar_phase"] < 1
    assert v["bpm"] == 120.0
    assert clock.peers == 0 and not clock.enabled


@needs_aalink
def test_tempo_set_locally_is_the_bpm(clock):
    clock.set_tempo(93.5)
    assert clock.tempo == pytest.approx(93.5)
    assert clock.values()["bpm"] == pytest.approx(93.5)
    assert clock._link.tempo == pytest.approx(93.5)
    with pytest.raises(LinkError, match="20..999"):
        clock.set_tempo(5)


@needs_aalink
def test_phases_agree_with_links_beat_and_phase(clock):
    link = clock._link
    assert link.quantum == 4
    for _ in range(50):
        beat, phase = link.beat, link.phase
        v = clock.values()
        late = link.beat - beat + 1e-3  # the clock read between the two: at most this many beats later
        assert circular(v["beat_phase"], beat % 1.0) < late
        assert circular(v["bar_phase"] * 4, phase, period=4) < late
        assert abs(v["beat_count"] - math.floor(beat)) <= 1  # the clock started in bar 0
        assert v["beat"] == pytest.approx(math.exp(-v["beat_phase"] * 60 / v["bpm"] / 0.1))
        time.sleep(0.01)


@needs_aalink
def test_values_at_a_given_time_follow_the_tempo(clock):
    clock.set_tempo(150)  # 0.4 s per beat
    now = time.monotonic()
    first = clock.values(now)
    for k in range(1, 9):
        later = clock.values(now + 0.05 * k)  # 1/8 beat apart
        assert circular(later["beat_phase"], first["beat_phase"] + k / 8) < 1e-3
        assert circular(later["bar_phase"], first["bar_phase"] + k / 32) < 1e-3
    assert clock.values(now + 0.4)["beat_count"] == first["beat_count"] + 1
    assert clock.values(now + 1.6)["beat_count"] == first["beat_count"] + 4
    # "now" agrees with the time read from time.monotonic().
    assert circular(clock.values(time.monotonic())["beat_phase"], clock.values()["beat_phase"]) < 1e-3


@needs_aalink
def test_beat_count_counts_up_as_time_passes(clock):
    clock.set_tempo(600)  # 0.1 s per beat
    start = clock.values()["beat_count"]
    assert wait_for(lambda: clock.values()["beat_count"] >= start + 3, timeout=5)
    counts = [clock.values()["beat_count"] for _ in range(200)]
    assert counts == sorted(counts)


@needs_aalink
def test_values_never_block(clock):
    start = time.perf_counter()
    for _ in range(2000):
        clock.values()
    assert (time.perf_counter() - start) / 2000 < 1e-3  # ~2 us here


@needs_aalink
def test_require_peers_gives_zeros_while_alone():
    with LinkClock(bpm=120, require_peers=True, enable=False) as c:
        v = c.values()
        assert v == {name: 0 for name in MUSICAL_VARIABLES} and isinstance(v["beat_count"], int)


@needs_aalink
def test_works_inside_a_running_asyncio_loop():
    import asyncio

    async def show():
        with LinkClock(bpm=90, enable=False) as c:
            return c.values()

    assert asyncio.run(show())["bpm"] == 90


@needs_aalink
def test_close_stops_the_clock_and_later_calls_fail_clearly():
    c = LinkClock(enable=False)
    thread = c._thread
    assert thread.is_alive()
    c.close()
    c.close()
    assert not thread.is_alive()
    with pytest.raises(LinkError, match="closed"):
        c.values()
    with pytest.raises(LinkError, match="closed"):
        c.peers


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bpm": 0}, "bpm must be > 0"),
        ({"bpm": 1200}, "20..999"),
        ({"bpm": "fast"}, "bpm must be a number"),
        ({"beats_per_bar": 0}, "beats_per_bar must be > 0"),
        ({"beat_decay": -1}, "beat_decay must be > 0"),
        ({"beat_decay": float("nan")}, "beat_decay must be > 0"),
    ],
)
def test_bad_settings_are_link_errors(kwargs, message):
    with pytest.raises(LinkError, match=message):
        LinkClock(enable=False, **kwargs)


def test_missing_aalink_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aalink", None)  # import aalink -> ImportError
    with pytest.raises(LinkError, match=r"pip install 'aalink") as info:
        LinkClock()
    assert isinstance(info.value, AudioError)  # the CLI prints AudioErrors as one line, exit 2


def test_aalink_failing_to_start_is_one_link_error(monkeypatch):
    class Broken:
        def __init__(self, *args):
            raise RuntimeError("cannot open sockets")

    monkeypatch.setitem(sys.modules, "aalink", type(sys)("aalink"))
    monkeypatch.setattr(sys.modules["aalink"], "Link", Broken, raising=False)
    before = {t.name for t in threading.enumerate() if t.name == "vj-link-loop"}
    with pytest.raises(LinkError, match="Ableton Link could not start: RuntimeError: cannot open sockets"):
        LinkClock()
    assert wait_for(lambda: {t.name for t in threading.enumerate() if t.name == "vj-link-loop"} <= before, 2)


# ---- two peers over the network -----------------------------------------------------------------------------


def multicast_problem(timeout=1.0):
    """Why UDP multicast to Link's group does not come back on the loopback interface, or None if it does."""
    try:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind(("", 0))
            port = rx.getsockname()[1]
            lo = socket.inet_aton("127.0.0.1")
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(LINK_GROUP) + lo)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, lo)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)  # never leaves this host
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            token = os.urandom(8)
            tx.sendto(token, (LINK_GROUP, port))
            if not select.select([rx], [], [], timeout)[0] or rx.recv(64) != token:
                return f"a datagram sent to {LINK_GROUP} on 127.0.0.1 did not come back within {timeout:g} s"
    except OSError as exc:
        return f"joining {LINK_GROUP} on 127.0.0.1 failed: {exc}"
    return None


@pytest.fixture
def link_network():
    """One two-peer test at a time on this machine (other test runs would be extra peers)."""
    path = Path(tempfile.gettempdir()) / "vj-test-link.lock"
    with open(path, "w") as lock:
        if not wait_for(lambda: _try_lock(lock), timeout=60, step=0.05):
            pytest.skip(f"another test run holds {path} for over 60 s")
        yield


def _try_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def expect_discovery(*counts):
    """Skip (with the reason) when this machine cannot carry Link's discovery; fail when it can."""
    if all(count() >= 1 for count in counts):
        for count in counts:
            if count() > 1:
                pytest.skip(
                    f"foreign Link peers are on this network ({count()} peers); the test does not change their tempo"
                )
        return
    problem = multicast_problem()
    if problem:
        pytest.skip(f"Link peers cannot discover each other here: UDP multicast does not work ({problem})")
    pytest.fail(f"Link peers did not discover each other within {DEADLINE:g} s, though multicast on loopback works")


@needs_aalink
def test_two_clocks_share_tempo_and_phase(link_network):
    with LinkClock(bpm=128, beats_per_bar=4) as a, LinkClock(bpm=100, beats_per_bar=4) as b:
        wait_for(lambda: a.peers >= 1 and b.peers >= 1)
        expect_discovery(lambda: a.peers, lambda: b.peers)
        b.set_tempo(97)
        assert wait_for(lambda: abs(a.values()["bpm"] - 97) < 1e-3), a.values()
        a.set_tempo(141.5)
        assert wait_for(lambda: abs(b.values()["bpm"] - 141.5) < 1e-3), b.values()
        for _ in range(20):
            now = time.monotonic()
            va, vb = a.values(now), b.values(now)
            assert circular(va["bar_phase"], vb["bar_phase"]) < 1e-3  # within 1 ms at 141.5 BPM
            assert circular(va["beat_phase"], vb["beat_phase"]) < 1e-3
            assert abs(va["beat"] - vb["beat"]) < 0.02
            time.sleep(0.01)


DJ = r"""
import asyncio, json, sys
from aalink import Link

async def main():
    link = Link(float(sys.argv[1]))
    link.quantum = 4
    link.enabled = True
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            link.enabled = False
            return
        if line[0] == "tempo":
            link.tempo = float(line[1])
        before = link.time.total_seconds()
        beat, phase = link.beat, link.phase
        after = link.time.total_seconds()
        print(json.dumps({"tempo": link.tempo, "peers": link.num_peers, "phase": phase, "beat": beat,
                          "time": (before + after) / 2}), flush=True)

asyncio.run(main())
"""


class Peer:
    """Another Link app in its own process (plain aalink), driven over stdin/stdout."""

    def __init__(self, bpm):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DJ, str(bpm)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()
        assert self.read() == "ready\n"
        self.started = time.monotonic()

    def read(self):
        try:
            return self.lines.get(timeout=30)
        except queue.Empty:
            self.proc.kill()
            pytest.fail(f"the Link peer process did not answer: {self.proc.stderr.read()}")

    def ask(self, *command):
        self.proc.stdin.write(" ".join(map(str, command)) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.read())

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


@needs_aalink
def test_a_running_session_in_another_process_leads(link_network):
    dj = Peer(128)
    try:
        # Link keeps the session that has run longer (by more than 0.5 s): let the DJ's be 2 s old, then join
        # (a margin a loaded machine cannot eat up before vj's session starts).
        time.sleep(max(0.0, dj.started + 2.0 - time.monotonic()))
        with LinkClock(bpm=100, beats_per_bar=4) as vj:
            wait_for(lambda: vj.peers >= 1 and dj.ask("state")["peers"] >= 1)
            expect_discovery(lambda: vj.peers, lambda: dj.ask("state")["peers"])
            # vj adopts the running session's tempo (its own 100 BPM does not override the DJ's 128).
            assert wait_for(lambda: abs(vj.tempo - 128) < 1e-3), vj.tempo
            dj.ask("tempo", 97)
            assert wait_for(lambda: abs(vj.values()["bpm"] - 97) < 1e-3), vj.values()
            vj.set_tempo(140)
            assert wait_for(lambda: abs(dj.ask("state")["tempo"] - 140) < 1e-3)
            for _ in range(10):
                state = dj.ask("state")
                # The DJ's moment, on Link's clock (shared by processes on one host), as time.monotonic().
                at = state["time"] - vj.link_time() + time.monotonic()
                v = vj.values(at)
                assert circular(v["bar_phase"] * 4, state["phase"], period=4) < 4e-3  # 4e-3 beat = 1.7 ms
                assert circular(v["beat_phase"], state["beat"] % 1.0) < 4e-3
                if circular(state["phase"], round(state["phase"])) > 4e-3:  # not at a beat boundary
                    assert v["beat_count"] % 4 == math.floor(state["phase"])
        # close() leaves the session: the DJ sees its peer go.
        assert wait_for(lambda: dj.ask("state")["peers"] == 0), "the DJ still sees vj after close()"
    finally:
        dj.close()
