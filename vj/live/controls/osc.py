"""OSC input for `vj live`: UDP messages under /vj/ become actions on the show's bus.

Addresses are matched exactly: no OSC wildcards, since one pattern such as `/vj/*` would fire every address and
python-osc's pattern matcher backtracks exponentially on a run of `*`. Bundles are applied on arrival (time tags
ignored). Every bad packet is counted and dropped with a rate-limited log line, so no sender can stall or crash
the show; `/vj/status` (with any arguments: a controller's button sends 1) is answered to the sender with one
JSON string. A prompt the show cannot take (too long here, or not parsing in the show) is a HUD warning.
"""

import errno
import ipaddress
import json
import logging
import math
import reprlib
import socket
import socketserver
import threading

from pythonosc import osc_message
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from vj.live.controls.actions import (
    Blackout,
    Downbeat,
    Freeze,
    JumpScene,
    Learn,
    NextScene,
    PreviousScene,
    QueueScene,
    RateLimitedLog,
    ReplacePrompt,
    SetControl,
    TapTempo,
    ToggleControlPreview,
    ToggleHud,
    Warn,
)
from vj.errors import VjError

log = logging.getLogger(__name__)

DEFAULT_PORT = 9000
MAX_PROMPT = 2000
CONTROL_PREFIX = "/vj/control/"
_BUNDLE = b"#bundle\0"
_MAX_BUNDLE_DEPTH = 4
# The argument types python-osc parses; for any other it logs a warning on the root logger per message.
_TYPES = frozenset("ihfdsbrmtTFN[]")
# What python-osc raises on a malformed datagram (bad UTF-8 escapes it as UnicodeDecodeError, a ValueError).
_MALFORMED = (osc_types.ParseError, osc_message.ParseError, ValueError)

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40
_short.maxlist = _short.maxtuple = 4


class OscError(VjError):
    """The OSC input cannot start (bad address, port in use); the message is one line for the user."""


class _Drop(Exception):
    """A message is dropped; the text says why."""


def parse_endpoint(text, default_port=DEFAULT_PORT):
    """`HOST:PORT`, `PORT`, `HOST` or `[IPV6]:PORT` (as given to `--osc`) -> (host, port); OscError if not."""
    text = text.strip()
    host, port = "127.0.0.1", str(default_port)
    if text.startswith("["):
        head, _, tail = text[1:].partition("]")
        host, port = head, tail[1:] if tail.startswith(":") else (tail or port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.isdigit():
        port = text
    elif text:
        host = text
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise OscError(f"OSC address {text!r}: the port must be a number 0..65535, e.g. --osc 127.0.0.1:9000")
    return host or "127.0.0.1", int(port)


def _listen_address(host, port):
    """The (family, sockaddr) to bind; only IP literals and `localhost`, so starting never waits on DNS."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise OscError(f"OSC port {port!r} is not a number 0..65535: pass e.g. --osc 127.0.0.1:{DEFAULT_PORT}")
    try:
        ip = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise OscError(
            f"OSC host {host!r} is not an IP address: pass --osc 127.0.0.1:{port or DEFAULT_PORT} "
            f"(this machine only) or --osc 0.0.0.0:{port or DEFAULT_PORT} (every network)"
        ) from None
    return (socket.AF_INET6, (str(ip), port)) if ip.version == 6 else (socket.AF_INET, (str(ip), port))


def _networks(allow):
    """The allow list as IP networks (a bare address is a network of one)."""
    nets = []
    for entry in allow:
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except (TypeError, ValueError):
            raise OscError(
                f"OSC allow list: {entry!r} is not an IP address or network (e.g. 192.168.1.20 or 192.168.1.0/24)"
            ) from None
    return tuple(nets)


def _endpoint(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_error(exc, host, port):
    """The one-line message for a failed bind."""
    where = _endpoint(host, port)
    if exc.errno == errno.EADDRINUSE:
        other = port + 1 if port < 65535 else DEFAULT_PORT
        return (
            f"OSC port {where} is already in use (another program or another vj listens there): "
            f"pass a free one, e.g. --osc {_endpoint(host, other)}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"OSC cannot listen on {where}: {host} is not an address of this machine; "
            f"pass one of its addresses, e.g. --osc 127.0.0.1:{port}"
        )
    if exc.errno == errno.EACCES:
        return f"OSC port {where} needs privileges: pass a port above 1023, e.g. --osc {_endpoint(host, DEFAULT_PORT)}"
    return f"OSC cannot listen on {where} ({exc.strerror}): pass another address, e.g. --osc 127.0.0.1:{DEFAULT_PORT}"


def _split(packet, depth=0):
    """The message datagrams in a packet: one message, or the messages of a bundle (nested a few deep at most)."""
    if packet.startswith(b"/"):
        return [packet]
    if not packet.startswith(_BUNDLE):
        raise _Drop("not an OSC message or bundle")
    if depth == _MAX_BUNDLE_DEPTH:
        raise _Drop(f"bundles nested more than {_MAX_BUNDLE_DEPTH} deep")
    if len(packet) < 16:
        raise _Drop("bundle without a time tag")
    messages, i = [], 16
    while i < len(packet):
        size, i = osc_types.get_int(packet, i)
        if size <= 0 or size % 4 or i + size > len(packet):
            raise _Drop(f"bundle element of size {size} in a {len(packet)}-byte packet")
        messages += _split(packet[i : i + size], depth + 1)
        i += size
    return messages


def _parse(dgram):
    """(address, arguments) of one message datagram; _Drop or a _MALFORMED error if it is not one."""
    address, index = osc_types.get_string(dgram, 0)
    if index < len(dgram):
        tags, _ = osc_types.get_string(dgram, index)
        if not tags.startswith(",") or not _TYPES.issuperset(tags[1:]):
            raise _Drop(f"{address}: unsupported type tags {tags!r}")
    return address, osc_message.OscMessage(dgram).params


def _is_number(value):
    """A finite int or float (OSC true/false are not numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _one(args, what):
    if len(args) != 1:
        raise _Drop(f"takes {what}, got {len(args)} argument{'' if len(args) == 1 else 's'}")
    return args[0]


def _flag(args, valid="1 (on), 0 (off) or nothing (toggle)"):
    """None for no argument, else the on/off of one 1 or 0 (int, float or OSC true/false)."""
    if not args:
        return None
    value = _one(args, valid)
    if isinstance(value, bool) or (_is_number(value) and value in (0, 1)):
        return bool(value)
    raise _Drop(f"takes {valid}, got {_short.repr(value)}")


def _trigger(action):
    """A handler firing `action` on 1 or no argument; 0 is a button's release (Resolume, TouchOSC): nothing to do."""

    def handle(args):
        on = _flag(args, "1 or nothing (press) or 0 (release)")
        return action if on is None or on else None

    return handle


class _RequestHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.on_datagram(self.request[0], self.client_address)


class _Server(socketserver.UDPServer):
    """A UDP server that hands each datagram to `on_datagram(data, sender)`, one at a time on the serving thread."""

    max_packet_size = 65535  # UDP's largest: socketserver's default 8192 would truncate long prompts into garbage

    def __init__(self, family, sockaddr, on_datagram):
        self.address_family = family
        self.on_datagram = on_datagram
        super().__init__(sockaddr, _RequestHandler)


class OscInput:
    """Listens for OSC on UDP `host:port` (port 0: any free port, see `.port`) and puts actions on `bus` as 'osc'.

    `scene_count()` bounds scene numbers, `status()` gives the dict sent back for `/vj/status`; `allow` (addresses
    or networks) limits who may send. Messages are handled one at a time on a daemon thread: the kernel's socket
    buffer is the only queue, so a flood costs packets, never memory. `.received` counts messages (an unreadable
    datagram counts as one), `.dropped` those dropped.
    """

    def __init__(self, host="127.0.0.1", port=DEFAULT_PORT, *, controls, bus, scene_count, status, allow=None):
        family, sockaddr = _listen_address(host, port)
        self._allow = None if allow is None else _networks(allow)
        self._controls, self._bus, self._scene_count, self._status = controls, bus, scene_count, status
        self._drops = RateLimitedLog(log, "OSC input")
        self._faults = RateLimitedLog(log, "OSC input (internal error, please report)")
        self.received = 0
        self._routes = {
            "/vj/scene": lambda args: JumpScene(self._scene_index(_one(args, "a scene number"))),
            "/vj/scene/queue": lambda args: QueueScene(self._scene_index(_one(args, "a scene number"))),
            "/vj/scene/next": _trigger(NextScene()),
            "/vj/scene/previous": _trigger(PreviousScene()),
            "/vj/blackout": lambda args: Blackout(_flag(args)),
            "/vj/freeze": lambda args: Freeze(_flag(args)),
            "/vj/control_preview": lambda args: ToggleControlPreview(_flag(args)),
            "/vj/prompt": self._prompt,
            "/vj/tap": _trigger(TapTempo()),
            "/vj/downbeat": _trigger(Downbeat()),
            "/vj/hud": _trigger(ToggleHud()),
            "/vj/learn": self._learn,
            "/vj/status": self._status_reply,
        }
        try:
            self._server = _Server(family, sockaddr, self._on_datagram)
        except OSError as exc:
            raise OscError(_bind_error(exc, sockaddr[0], port)) from None
        self.host, self.port = self._server.server_address[:2]
        self._closed = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="vj-osc", daemon=True
        )
        self._thread.start()
        log.info("OSC listening on %s", self.endpoint)
        if not ipaddress.ip_address(self.host).is_loopback and self._allow is None:
            log.warning(
                "OSC listens on %s: any machine on the network can control the show "
                "(give an allow list to limit senders)",
                _endpoint(self.host, self.port),
            )

    @property
    def endpoint(self):
        """'127.0.0.1:9000' (or '[::1]:9000'): where it listens, the port chosen when 0 was asked for."""
        return _endpoint(self.host, self.port)

    @property
    def dropped(self):
        """Messages dropped so far (bad, unknown, not allowed, or failed)."""
        return self._drops.total + self._faults.total

    def close(self):
        """Stop serving (within the 0.1 s poll interval) and release the port; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _allowed(self, host):
        if self._allow is None:
            return True
        ip = ipaddress.ip_address(host)
        ip = getattr(ip, "ipv4_mapped", None) or ip  # a dual-stack socket shows IPv4 senders as ::ffff:a.b.c.d
        return any(ip in net for net in self._allow)

    def _on_datagram(self, data, sender):
        """Handle one datagram on the server thread: check the sender, split, route, reply; never raises."""
        ip = sender[0]
        try:
            if not self._allowed(ip):
                self.received += 1
                self._drops.drop(f"sender {ip} is not in the OSC allow list")
                return
            try:
                messages = _split(data)
            except (_Drop, *_MALFORMED) as exc:
                self.received += 1
                self._drops.drop(f"malformed packet ({len(data)} bytes from {ip}): {exc}")
                return
            for dgram in messages:
                self.received += 1
                self._on_message(dgram, sender)
        except Exception as exc:  # a bug here must not stop the input: count it, log it, keep serving
            self._faults.drop(f"{type(exc).__name__}: {exc} (packet of {len(data)} bytes from {ip})")

    def _on_message(self, dgram, sender):
        try:
            address, args = _parse(dgram)
        except (_Drop, *_MALFORMED) as exc:
            self._drops.drop(f"malformed message from {sender[0]}: {exc}")
            return
        try:
            result = self._route(address, args)
        except _Drop as exc:
            self._drops.drop(f"{address} {exc} (from {sender[0]})")
            return
        if isinstance(result, bytes):
            try:
                self._server.socket.sendto(result, sender)
            except OSError as exc:
                self._drops.drop(f"{address}: reply to {_endpoint(*sender[:2])} failed: {exc}")
        elif result is not None:
            self._bus.put(result, "osc")

    def _route(self, address, args):
        """The action for one message, None (a trigger's release), or the bytes of a reply; _Drop if invalid."""
        handler = self._routes.get(address)
        if handler is not None:
            return handler(args)
        if address.startswith(CONTROL_PREFIX):
            return self._set_control(address[len(CONTROL_PREFIX) :], args)
        raise _Drop("is not an OSC address of vj (see README: OSC)")

    def _control_spec(self, name):
        spec = self._controls.specs.get(name)
        if spec is None:
            names = sorted(self._controls.specs)
            known = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") if names else "none declared"
            raise _Drop(f"names no control {_short.repr(name)} (controls: {known})")
        return spec

    def _set_control(self, name, args):
        spec = self._control_spec(name)
        value = _one(args, "one number")
        if not _is_number(value) or not spec.accepts(value):
            raise _Drop(f"takes a number in {spec.lo:g}..{spec.hi:g}, got {_short.repr(value)}")
        return SetControl(name, float(value))

    def _scene_index(self, number):
        """The 0-based index of a 1-based scene number (an int, or a float like 3.0 from a fader)."""
        count = self._scene_count()
        if _is_number(number) and number == int(number) and 1 <= number <= count:
            return int(number) - 1
        raise _Drop(f"takes a scene number 1..{count}, got {_short.repr(number)}")

    def _prompt(self, args):
        if len(args) != 2:
            raise _Drop(f"takes a scene number and a text, got {len(args)} argument{'' if len(args) == 1 else 's'}")
        index, text = self._scene_index(args[0]), args[1]
        if not isinstance(text, str) or not text.strip():
            raise _Drop(f"takes a non-empty text after the scene number, got {_short.repr(text)}")
        if len(text) > MAX_PROMPT:  # refused like a text that does not parse: in the HUD, without the text
            return Warn(f"prompt for scene {index + 1} refused: over {MAX_PROMPT} characters")  # one HUD line
        return ReplacePrompt(index, text)

    def _learn(self, args):
        if not args:
            return Learn(None)
        name = _one(args, "a control name, or nothing to stop learning")
        if not isinstance(name, str):
            raise _Drop(f"takes a control name, got {_short.repr(name)}")
        self._control_spec(name)
        return Learn(name)

    def _status_reply(self, args):
        """The show's state for the sender, whatever the arguments (buttons send 1 on press, 0 on release)."""
        builder = OscMessageBuilder("/vj/status")
        builder.add_arg(json.dumps(self._status(), separators=(",", ":"), default=str))
        return builder.build().dgram
