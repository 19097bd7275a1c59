"""OSC input over real loopback UDP: each address's action, dropped bad input, status replies, allow list, floods."""

import json
import logging
import random
import socket
import struct
import threading
import time
import tracemalloc

import pytest
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from vj.live.controls.actions import (
    ActionBus,
    Blackout,
    Downbeat,
    Freeze,
    JumpScene,
    Learn,
    NextScene,
    PreviousScene,
    QueueScene,
    ReplacePrompt,
    SetControl,
    TapTempo,
    ToggleHud,
    Warn,
)
from recording_bus import RecordingBus
from vj.config.live_keys import ControlSpec
from vj.live.controls.controls import Controls
from vj.live.controls.osc import OscError, OscInput, parse_endpoint

SPECS = [ControlSpec("zoom", 1.0, 0.5, 2.0), ControlSpec("hue", 0.0, 0.0, 1.0)]
STATUS = {"scene": 2, "scene_count": 3, "bpm": 128.0, "blackout": False}
SENTINEL = ("/vj/control/hue", 0.125)  # a valid message sent after the ones under test: once it is through, they are
SENTINEL_ACTION = SetControl("hue", 0.125)
TIMEOUT = 5.0


def message(address, *args):
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class Rig:
    """An OscInput on a free loopback port with a client socket that sends to it."""

    def __init__(self, **kw):
        self.bus = RecordingBus()
        kw.setdefault("controls", Controls(SPECS))
        kw.setdefault("scene_count", lambda: 3)
        kw.setdefault("status", lambda: STATUS)
        self.osc = OscInput("127.0.0.1", 0, bus=self.bus, **kw)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def send(self, address, *args):
        self.send_raw(message(address, *args))

    def send_raw(self, data, sock=None):
        (sock or self.sock).sendto(data, ("127.0.0.1", self.osc.port))

    def actions_until_sentinel(self, resend=False):
        """The actions up to and including the sentinel, which is sent now (and again every 50 ms if `resend`:
        after a flood the kernel may have dropped it while the socket buffer was full)."""

        def done(seen):
            return SENTINEL_ACTION in seen

        self.send(*SENTINEL)
        deadline = time.monotonic() + TIMEOUT
        while resend and not self.bus.became(done, 0.05) and time.monotonic() < deadline:
            self.send(*SENTINEL)
        assert self.bus.became(done), "the sentinel message never arrived: the OSC input stopped"
        return [a for a, _ in self.bus.seen]

    def close(self):
        self.sock.close()
        self.osc.close()


@pytest.fixture
def make_rig():
    rigs = []

    def make(**kw):
        rigs.append(Rig(**kw))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig):
    return make_rig()


def wait_until(predicate, timeout=TIMEOUT):
    """Poll `predicate` (for counters, which have no event) until true or `timeout`."""
    deadline, pause = time.monotonic() + timeout, threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


GOOD = [
    (("/vj/control/zoom", 1.5), SetControl("zoom", 1.5)),
    (("/vj/control/zoom", 2), SetControl("zoom", 2.0)),
    (("/vj/control/hue", 0.0), SetControl("hue", 0.0)),
    (("/vj/scene", 2), JumpScene(1)),
    (("/vj/scene", 3.0), JumpScene(2)),
    (("/vj/scene/next",), NextScene()),
    (("/vj/scene/next", 1), NextScene()),
    (("/vj/scene/previous", 1.0), PreviousScene()),
    (("/vj/scene/queue", 1), QueueScene(0)),
    (("/vj/blackout", 1), Blackout(True)),
    (("/vj/blackout", 0), Blackout(False)),
    (("/vj/blackout", 1.0), Blackout(True)),
    (("/vj/blackout", True), Blackout(True)),
    (("/vj/blackout",), Blackout(None)),
    (("/vj/freeze", 1), Freeze(True)),
    (("/vj/freeze", 0.0), Freeze(False)),
    (("/vj/freeze",), Freeze(None)),
    (("/vj/prompt", 2, "a red fox:1 | fog:0.5"), ReplacePrompt(1, "a red fox:1 | fog:0.5")),
    (("/vj/prompt", 3, "x" * 2000), ReplacePrompt(2, "x" * 2000)),
    (("/vj/tap",), TapTempo()),
    (("/vj/tap", 1), TapTempo()),
    (("/vj/downbeat",), Downbeat()),
    (("/vj/hud", 1.0), ToggleHud()),
    (("/vj/learn", "zoom"), Learn("zoom")),
    (("/vj/learn",), Learn(None)),
]


@pytest.mark.parametrize("sent, expected", GOOD, ids=[" ".join(map(str, s))[:40] for s, _ in GOOD])
def test_each_address_gives_its_action(rig, sent, expected):
    rig.send(*sent)
    assert rig.bus.became(lambda seen: len(seen) >= 1)
    assert rig.bus.seen == [(expected, "osc")]
    assert rig.bus.active("osc")
    assert (rig.osc.received, rig.osc.dropped) == (1, 0)


@pytest.mark.parametrize("address", ["/vj/scene/next", "/vj/scene/previous", "/vj/tap", "/vj/downbeat", "/vj/hud"])
def test_trigger_fires_on_press_and_ignores_release(rig, address):
    """Resolume and TouchOSC buttons send 1 on press and 0 on release: one action, and the release is no error."""
    rig.send(address, 1)
    rig.send(address, 0)
    rig.send(address, 0.0)
    rig.send(address, False)
    actions = rig.actions_until_sentinel()
    assert len(actions) == 2 and actions[1] == SENTINEL_ACTION
    assert (rig.osc.received, rig.osc.dropped) == (5, 0)


def test_bundle_messages_are_applied_at_once_whatever_their_time_tag(rig):
    """A bundle's time tag is ignored: a bundle dated an hour ahead still acts now, and a blocked wait never
    holds up the input."""
    bundle = OscBundleBuilder(time.time() + 3600)
    bundle.add_content(OscMessageBuilder("/vj/scene/next").build())
    inner = OscBundleBuilder(0)
    inner.add_content(OscMessageBuilder("/vj/hud").build())
    bundle.add_content(inner.build())
    rig.send_raw(bundle.build().dgram)
    assert rig.actions_until_sentinel() == [NextScene(), ToggleHud(), SENTINEL_ACTION]
    assert (rig.osc.received, rig.osc.dropped) == (3, 0)


def test_long_prompts_in_one_bundle_are_read_whole(rig):
    """A bundle of two 2000-character prompts is about 16 kB: more than socketserver reads by default."""
    texts = ["🦊" * 2000, "é" * 2000]
    bundle = OscBundleBuilder(0)
    for number, text in enumerate(texts, 1):
        bundle.add_content(OscMessage(message("/vj/prompt", number, text)))
    rig.send_raw(bundle.build().dgram)
    assert rig.actions_until_sentinel() == [ReplacePrompt(0, texts[0]), ReplacePrompt(1, texts[1]), SENTINEL_ACTION]


BAD = [
    ("/vj/control/nope", 0.5),  # not a declared control
    ("/vj/control/", 0.5),
    ("/vj/control/zoom", 5.0),  # outside 0.5..2
    ("/vj/control/zoom", 0),
    ("/vj/control/zoom", float("nan")),
    ("/vj/control/zoom", float("inf")),
    ("/vj/control/zoom", "1.0"),
    ("/vj/control/zoom", True),
    ("/vj/control/zoom",),
    ("/vj/control/zoom", 1.0, 1.0),
    ("/vj/scene", 0),  # scene numbers are 1..3
    ("/vj/scene", 4),
    ("/vj/scene", 1.5),
    ("/vj/scene", float("nan")),
    ("/vj/scene", "2"),
    ("/vj/scene",),
    ("/vj/scene/queue", 9),
    ("/vj/blackout", 2),
    ("/vj/blackout", 0.5),
    ("/vj/blackout", 1, 0),
    ("/vj/blackout", "on"),
    ("/vj/freeze", -1),
    ("/vj/scene/next", 0.5),
    ("/vj/tap", 2),
    ("/vj/hud", "yes"),
    ("/vj/prompt", 1),
    ("/vj/prompt", 1, ""),
    ("/vj/prompt", 0, "fox"),
    ("/vj/prompt", 1, 5),
    ("/vj/learn", "nope"),
    ("/vj/learn", 3),
    ("/vj/nope",),
    ("/vj/*",),  # no OSC wildcards: one pattern must not fire every address
    ("/vj/scene/*", 1),
    ("/vj/scene/next/",),
    ("/other", 1),
]


@pytest.mark.parametrize("sent", BAD, ids=[" ".join(map(str, s))[:40] for s in BAD])
def test_bad_messages_are_dropped_and_counted(rig, sent):
    rig.send(*sent)
    assert rig.actions_until_sentinel() == [SENTINEL_ACTION]
    assert (rig.osc.received, rig.osc.dropped) == (2, 1)


def _bundle(*elements, depth_tag=b"\0\0\0\0\0\0\0\1"):
    return b"#bundle\0" + depth_tag + b"".join(struct.pack(">i", len(e)) + e for e in elements)


def _nested(depth):
    packet = message("/vj/hud")
    for _ in range(depth):
        packet = _bundle(packet)
    return packet


RAW = {
    "not OSC": b"hello there",
    "empty datagram": b"",
    "address without its null": b"/vj/hud",
    "bad UTF-8 in the address": b"/\xff\x00\x00",
    "bad UTF-8 in a string": b"/vj/learn\0\0\0,s\0\0\xff\xfe\0\0",
    "type tags without comma": b"/vj/scene\0\0\0i\0\0\0\0\0\0\1",
    "missing int": b"/vj/scene\0\0\0,i\0\0",
    "unsupported type tag": b"/vj/scene\0\0\0,x\0\0\0\0\0\1",
    "unclosed array": b"/vj/scene\0\0\0,[i\0\0\0\0\1",
    "truncated bundle": b"#bundle\0\0\0",
    "bundle element too long": _bundle(message("/vj/hud"))[:-4],
    "bundle element of negative size": b"#bundle\0" + b"\0" * 8 + struct.pack(">i", -8) + message("/vj/hud"),
    "bundle element neither message nor bundle": _bundle(b"junk"),
    "bundles nested too deep": _nested(10),
}


@pytest.mark.parametrize("data", RAW.values(), ids=RAW.keys())
def test_malformed_packets_are_dropped_and_counted(rig, data, caplog):
    caplog.set_level(logging.WARNING)
    rig.send_raw(data)
    assert rig.actions_until_sentinel() == [SENTINEL_ACTION]
    assert (rig.osc.received, rig.osc.dropped) == (2, 1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("OSC input dropped"), lines  # one line, ours, no traceback


def test_drop_log_is_rate_limited_with_counts(rig, caplog):
    caplog.set_level(logging.WARNING, logger="vj.live.controls.osc")
    for _ in range(50):
        rig.send("/vj/nope")
    rig.actions_until_sentinel()
    assert rig.osc.dropped == 50
    lines = [r.getMessage() for r in caplog.records if r.name == "vj.live.controls.osc"]
    assert 1 <= len(lines) <= 2 and "/vj/nope is not an OSC address of vj" in lines[0], lines


def test_status_replies_to_the_sender_with_one_json_string(rig):
    rig.sock.settimeout(TIMEOUT)
    rig.send("/vj/status")
    data, sender = rig.sock.recvfrom(65535)
    reply = OscMessage(data)
    assert sender == ("127.0.0.1", rig.osc.port)
    assert reply.address == "/vj/status" and len(reply.params) == 1
    assert json.loads(reply.params[0]) == STATUS
    assert rig.osc.dropped == 0 and rig.bus.seen == []


@pytest.mark.parametrize("args", [(1,), (1.0,), (True,), ("now", 2)])
def test_status_replies_whatever_the_arguments(rig, args):
    """A TouchOSC or Open Stage Control button sends `/vj/status 1` (and 0 on release): each one is answered."""
    rig.sock.settimeout(TIMEOUT)
    rig.send("/vj/status", *args)
    data, _ = rig.sock.recvfrom(65535)
    assert json.loads(OscMessage(data).params[0]) == STATUS
    assert rig.osc.dropped == 0


def test_an_over_long_prompt_is_a_hud_warning_like_one_that_does_not_parse(rig):
    rig.send("/vj/prompt", 2, "x" * 2001)
    assert rig.actions_until_sentinel() == [Warn("prompt for scene 2 refused: over 2000 characters"), SENTINEL_ACTION]


def test_status_reaches_python_osc_clients(rig):
    """The documented client recipe: SimpleUDPClient sends and reads the reply on the same socket."""
    client = SimpleUDPClient("127.0.0.1", rig.osc.port)
    try:
        client.send_message("/vj/status", [])
        replies = client.get_messages(TIMEOUT)
        assert json.loads(next(replies).params[0])["bpm"] == 128.0
    finally:
        client.close()


def test_status_keeps_serving_when_the_show_status_fails(make_rig, caplog):
    def broken():
        raise RuntimeError("no show yet")

    rig = make_rig(status=broken)
    caplog.set_level(logging.WARNING)
    rig.send("/vj/status")
    assert rig.actions_until_sentinel() == [SENTINEL_ACTION]
    assert rig.osc.dropped == 1
    assert any("RuntimeError: no show yet" in r.getMessage() for r in caplog.records)


def test_scene_count_is_read_for_every_message(make_rig):
    count = [1]
    rig = make_rig(scene_count=lambda: count[0])
    rig.send("/vj/scene", 2)
    assert wait_until(lambda: rig.osc.dropped == 1)
    count[0] = 2
    rig.send("/vj/scene", 2)
    assert rig.actions_until_sentinel() == [JumpScene(1), SENTINEL_ACTION]
    assert rig.osc.dropped == 1


def _second_loopback_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.2", 0))
    except OSError:
        sock.close()
        return None
    return sock


def test_allow_list_drops_other_senders(make_rig):
    other = _second_loopback_socket()
    if other is None:
        pytest.skip("127.0.0.2 cannot be bound here (see the network variant below)")
    try:
        rig = make_rig(allow=["127.0.0.1"])
        rig.send_raw(message("/vj/hud"), sock=other)
        assert rig.actions_until_sentinel() == [SENTINEL_ACTION]
        assert (rig.osc.received, rig.osc.dropped) == (2, 1)
        wide = make_rig(allow=["127.0.0.0/8"])
        wide.send_raw(message("/vj/hud"), sock=other)
        assert wide.actions_until_sentinel() == [ToggleHud(), SENTINEL_ACTION]
    finally:
        other.close()


def test_allow_list_networks(make_rig):
    loopback = make_rig(allow=["10.0.0.0/8", "127.0.0.0/8"])
    assert loopback.actions_until_sentinel() == [SENTINEL_ACTION]
    elsewhere = make_rig(allow=["10.0.0.0/8", "::1"])
    elsewhere.send(*SENTINEL)
    assert wait_until(lambda: elsewhere.osc.dropped == 1)
    assert elsewhere.bus.seen == [] and elsewhere.osc.received == 1


def test_bad_allow_entry_is_a_one_line_error():
    with pytest.raises(OscError, match=r"allow list: '10\.0\.0\.300' is not an IP address or network"):
        OscInput(port=0, controls=Controls(), bus=ActionBus(), scene_count=lambda: 1, status=dict, allow=["10.0.0.300"])


def test_ipv6_loopback(rig):
    try:
        osc6 = OscInput("::1", 0, controls=Controls(SPECS), bus=rig.bus, scene_count=lambda: 3, status=dict)
    except OscError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with osc6, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.sendto(message("/vj/hud"), ("::1", osc6.port))
        assert rig.bus.became(lambda seen: seen == [ToggleHud()])
    assert not osc6._thread.is_alive()


def _start(port, host="127.0.0.1"):
    return OscInput(host, port, controls=Controls(), bus=ActionBus(), scene_count=lambda: 1, status=dict)


def test_port_in_use_is_a_one_line_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(OscError) as err:
            _start(port)
    text = str(err.value)
    assert "\n" not in text
    assert f"127.0.0.1:{port} is already in use" in text and f"--osc 127.0.0.1:{port + 1}" in text


@pytest.mark.parametrize(
    "host, port, expected",
    [
        ("192.0.2.1", 0, "192.0.2.1 is not an address of this machine"),  # TEST-NET-1: never local, no traffic sent
        ("example.com", 9000, "OSC host 'example.com' is not an IP address: pass --osc 127.0.0.1:9000"),
        ("127.0.0.1", 70000, "OSC port 70000 is not a number 0..65535"),
    ],
)
def test_bad_listen_address_is_a_one_line_error(host, port, expected):
    with pytest.raises(OscError) as err:
        _start(port, host)
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:9001", ("127.0.0.1", 9001)),
        ("9002", ("127.0.0.1", 9002)),
        ("0.0.0.0", ("0.0.0.0", 9000)),
        (":9003", ("127.0.0.1", 9003)),
        ("[::1]:9004", ("::1", 9004)),
        ("::1", ("::1", 9000)),
    ],
)
def test_parse_endpoint(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:port", "127.0.0.1:70000", "[::1]x"])
def test_parse_endpoint_rejects_bad_ports(text):
    with pytest.raises(OscError, match="the port must be a number 0..65535"):
        parse_endpoint(text)


def test_close_is_prompt_and_frees_the_port(make_rig):
    rig = make_rig()
    port = rig.osc.port
    t0 = time.monotonic()
    rig.osc.close()
    assert time.monotonic() - t0 < 1.0
    assert not rig.osc._thread.is_alive()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))
    rig.osc.close()  # a second close is harmless


FLOOD = [
    b"\x00garbage",
    b"/\xff\x00\x00",
    b"/vj/scene\0\0\0,x\0\0\0\0\0\1",  # an unsupported type tag: python-osc alone would log it on the root logger
    message("/vj/nope", 1),
    message("/vj/control/zoom", float("nan")),
    message("/vj/scene", 99),
    _bundle(b"junk"),
    _nested(10),
    message("/vj/" + "*" * 40 + "x"),  # python-osc's Dispatcher backtracks for many seconds on this one
]


def test_flood_of_bad_packets_neither_stalls_nor_grows_memory(rig, caplog):
    caplog.set_level(logging.WARNING)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        t0 = time.monotonic()
        for i in range(20000):
            rig.send_raw(FLOOD[i % len(FLOOD)])
        actions = rig.actions_until_sentinel(resend=True)
        elapsed = time.monotonic() - t0
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert actions == [SENTINEL_ACTION] * len(actions)
    dropped = rig.osc.dropped
    assert dropped > len(FLOOD) and rig.osc.received == dropped + len(actions)
    assert elapsed < 10
    assert grown < 150 * 1024, f"memory grew by {grown} bytes over {dropped} dropped packets"
    lines = [r for r in caplog.records]
    assert all(r.name == "vj.live.controls.osc" for r in lines), [r.getMessage() for r in lines]
    assert len(lines) <= elapsed + 2  # at most one line per second


def _random_arg(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randint(-(2**31), 2**31 - 1)
    if kind == 1:
        return rng.choice([0, 1, 2, 3, -1, 2**40])
    if kind == 2:
        return rng.choice([0.0, 1.0, 0.5, 1.5, -0.0, float("nan"), float("inf"), float("-inf"), 1e30, rng.random()])
    if kind == 3:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(0, 12)))
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.randbytes(rng.randrange(1, 9))  # python-osc cannot build an empty blob
    if kind == 6:
        return "zoom"
    return rng.uniform(-3, 3)


ADDRESSES = [
    "/vj/control/zoom",
    "/vj/control/nope",
    "/vj/scene",
    "/vj/scene/next",
    "/vj/scene/previous",
    "/vj/scene/queue",
    "/vj/blackout",
    "/vj/freeze",
    "/vj/prompt",
    "/vj/tap",
    "/vj/downbeat",
    "/vj/hud",
    "/vj/learn",
    "/vj/status",
    "/vj",
    "/",
    "/vj/scene/*",
    "/vj/{scene,hud}",
    "/vj/[a-z]",
]


def _random_message(rng):
    return message(rng.choice(ADDRESSES), *[_random_arg(rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))])


def _random_packet(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 120))
    if kind == 1:
        return rng.choice([b"/", b"#bundle\0"]) + rng.randbytes(rng.randrange(0, 60))
    if kind == 2:
        return _random_message(rng)
    if kind == 3:  # a valid message with a few bytes changed, or cut short
        data = bytearray(_random_message(rng))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data[: rng.randrange(1, len(data) + 1)] if rng.random() < 0.3 else data)
    bundle = OscBundleBuilder(rng.choice([0, 1, time.time() + 3600]))
    for _ in range(rng.randrange(1, 4)):
        bundle.add_content(OscMessage(_random_message(rng)))
    return bundle.build().dgram


def test_fuzz_never_raises_nor_stops_the_server(rig, caplog):
    caplog.set_level(logging.WARNING)
    rng = random.Random(20240611)
    for _ in range(3000):
        rig.send_raw(_random_packet(rng))
    rig.actions_until_sentinel(resend=True)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "internal error" in m], messages
    assert all(r.name == "vj.live.controls.osc" for r in caplog.records), messages
    assert rig.osc.received > 1000 and rig.osc.dropped > 100
