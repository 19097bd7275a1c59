"""Tempo and phase from an Ableton Link session (`tempo_source: link`), as the musical variables.

`LinkClock` joins a Link session through the `aalink` package and answers, for now or for a given time, the same
variables the audio beat tracker gives: `beat`, `beat_phase`, `bar_phase`, `bpm`, `beat_count`. It only reads
Link's shared timeline: a call is a few microseconds and never waits on the network (Link's discovery and clock
sync run on its own threads), so a live show can poll it once per frame or per audio block.

    clock = LinkClock(bpm=120, beats_per_bar=4)      # joins the session on the local network
    values = clock.values()                          # {"beat": ..., "beat_phase": ..., ...}
    clock.peers                                      # other Link apps in the session
    clock.close()

Definitions (b = Link's beat at the time asked, with quantum = `beats_per_bar`; q = `beats_per_bar`):

- `beat_phase` = b mod 1, `bar_phase` = (b mod q) / q — the same phase every peer with the same quantum sees
  (Link aligns b mod q across the session; the beat numbers themselves may differ between peers by bars);
- `beat` = exp(−s / `beat_decay`), s = `beat_phase` · 60 / tempo: the seconds since the last beat boundary;
- `bpm` = the session tempo;
- `beat_count` = whole beats since the start of the bar in which the clock started, so `beat_count % q` is
  the beat's position in the bar (for a whole q). It follows Link's timeline, which may step once by less
  than a bar when the clock joins a session whose bars are elsewhere (or a peer re-positions the timeline);
  if that moves it before the first bar, the count starts from the bar before (it is never negative).

With `require_peers=True` every variable is 0 while no other peer is connected (the clock still runs; as soon
as a peer joins, its tempo and phase are used). Otherwise a clock alone runs at its own tempo (`bpm`), as Link
apps do, and a peer that joins later adopts the existing session's tempo and phase.

`aalink` needs a running asyncio event loop when a Link object is created; LinkClock runs a private loop on a
daemon thread for that, so callers need no asyncio. Every failure is a `LinkError` (an `AudioError`), whose
message says what to install or what went wrong.
"""

import asyncio
import concurrent.futures
import math
import threading
import time

from vj.config.musical import MUSICAL_VARIABLES
from vj.errors import AudioError

INSTALL = "pip install 'aalink>=0.2.3,<0.3'"
MIN_BPM, MAX_BPM = 20.0, 999.0  # Link's tempo range (it clamps to it)


class LinkError(AudioError):
    """Ableton Link cannot be used: aalink is missing or failed, or a clock setting is invalid."""


def _import_aalink():
    try:
        import aalink
    except ImportError as exc:
        raise LinkError(
            f"tempo_source: link needs the aalink package (Ableton Link); install it with: {INSTALL} ({exc})"
        ) from None
    if not hasattr(aalink, "Link"):
        raise LinkError(f"the installed aalink has no Link class; reinstall it with: {INSTALL}")
    return aalink


def _positive(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise LinkError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise LinkError(f"{name} must be > 0, got {value:g}")
    return value


def _tempo(value):
    value = _positive("bpm", value)
    if not MIN_BPM <= value <= MAX_BPM:
        raise LinkError(f"bpm must be within {MIN_BPM:g}..{MAX_BPM:g} (Ableton Link's tempo range), got {value:g}")
    return value


def zero_values():
    """The musical variables with no tempo: all 0."""
    return {name: 0 if name == "beat_count" else 0.0 for name in MUSICAL_VARIABLES}


def musical_values(beat, tempo, beats_per_bar, beat_decay, origin=0.0):
    """The musical variables at Link beat `beat` (quantum = `beats_per_bar`) and tempo `tempo` (BPM)."""
    beat_phase = beat - math.floor(beat)
    since = beat_phase * 60.0 / tempo
    return {
        "beat": math.exp(-since / beat_decay),
        "beat_phase": beat_phase,
        "bar_phase": (beat % beats_per_bar) / beats_per_bar,
        "bpm": tempo,
        "beat_count": max(0, math.floor(beat - origin)),
    }


class LinkClock:
    """A peer in an Ableton Link session that gives the musical variables for now or a given time.

    bpm: the tempo proposed while alone (a session that already runs keeps its own tempo).
    beats_per_bar: Link's quantum; peers with the same quantum share `bar_phase`.
    beat_decay: time constant in seconds of the `beat` pulse.
    enable: join the session now (otherwise the clock runs locally until `enabled = True`).
    start_stop_sync: share play/stop with peers that have it on (see `playing`).
    require_peers: all variables are 0 while no other peer is connected.
    timeout: seconds to wait for the private event loop thread at start (only in the constructor).
    """

    def __init__(
        self,
        bpm=120.0,
        beats_per_bar=4,
        beat_decay=0.1,
        *,
        enable=True,
        start_stop_sync=False,
        require_peers=False,
        timeout=5.0,
    ):
        bpm = _tempo(bpm)
        self.beats_per_bar = _positive("beats_per_bar", beats_per_bar)
        self.beat_decay = _positive("beat_decay", beat_decay)
        self.require_peers = bool(require_peers)
        aalink = _import_aalink()
        self._lock = threading.Lock()
        self._link = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vj-link-loop", daemon=True)
        try:
            self._thread.start()
            self._link = self._create(aalink, bpm, timeout)
            self._link.quantum = self.beats_per_bar
            self._link.start_stop_sync_enabled = bool(start_stop_sync)
            self._link.enabled = bool(enable)
            # The bar in which the clock starts: beat_count counts from there.
            self._origin = math.floor(self._link.beat / self.beats_per_bar) * self.beats_per_bar
            self._check_api()
        except LinkError:
            self.close()
            raise
        except Exception as exc:  # aalink or its Link threads could not start
            self.close()
            raise LinkError(f"Ableton Link could not start: {type(exc).__name__}: {exc}") from None

    def _create(self, aalink, bpm, timeout):
        async def create():
            try:
                return aalink.Link(bpm)  # aalink >= 0.2: takes the running loop
            except TypeError:
                return aalink.Link(bpm, asyncio.get_running_loop())  # older aalink: the loop is an argument

        future = asyncio.run_coroutine_threadsafe(create(), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LinkError(f"Ableton Link did not start within {timeout:g} s") from None

    def _check_api(self):
        link = self._link
        for name in ("beat", "tempo", "num_peers", "time", "playing"):
            getattr(link, name)

    def _live(self):
        link = self._link
        if link is None:
            raise LinkError("the Link clock is closed")
        return link

    # ---- session state -----------------------------------------------------------------------------------

    @property
    def enabled(self):
        """Whether the clock takes part in the network session."""
        return bool(self._live().enabled)

    @enabled.setter
    def enabled(self, on):
        self._live().enabled = bool(on)

    @property
    def peers(self):
        """Number of other Link peers in the session (0 when alone or disabled)."""
        return int(self._live().num_peers)

    @property
    def tempo(self):
        """The session tempo in BPM (this clock's own while alone)."""
        return float(self._live().tempo)

    def set_tempo(self, bpm):
        """Propose a tempo to the session (every peer follows it, as when a DJ changes tempo)."""
        self._live().tempo = _tempo(bpm)

    @property
    def playing(self):
        """Link's transport state (shared with peers when `start_stop_sync` is on)."""
        return bool(self._live().playing)

    def link_time(self, at=None):
        """Link's clock in seconds for `time.monotonic()` time `at` (now if None)."""
        link = self._live()
        now = link.time.total_seconds()
        return now if at is None else at + (now - time.monotonic())

    def beat_at(self, at=None):
        """Link's beat (quantum = beats_per_bar) and tempo at `time.monotonic()` time `at` (now if None)."""
        link = self._live()
        try:
            before = link.time.total_seconds()
            beat = link.beat
            tempo = link.tempo
            after = link.time.total_seconds()
            if at is not None:
                target = at + (after - time.monotonic())
                beat += (target - (before + after) / 2) * tempo / 60.0
        except Exception as exc:
            raise LinkError(f"Ableton Link failed: {type(exc).__name__}: {exc}") from None
        return beat, tempo

    def values(self, at=None):
        """The musical variables at `time.monotonic()` time `at` (now if None); all 0 under `require_peers`
        while alone. Times other than now are extrapolated from now at the current tempo."""
        if self.require_peers and self.peers == 0:
            return zero_values()
        beat, tempo = self.beat_at(at)
        origin = self._origin
        if beat < origin:  # Link's timeline moved back before the first bar (joining a session): count from
            origin = self._origin = math.floor(beat / self.beats_per_bar) * self.beats_per_bar  # that bar
        return musical_values(beat, tempo, self.beats_per_bar, self.beat_decay, origin)

    # ---- lifetime ----------------------------------------------------------------------------------------

    def close(self):
        """Leave the session and stop the clock's threads; later calls raise LinkError. Safe to call twice."""
        with self._lock:
            link, self._link = self._link, None
            if link is not None:
                try:
                    link.enabled = False
                except Exception:
                    pass
                del link  # aalink's destructor joins Link's threads with the GIL released
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
                if self._thread.is_alive():
                    self._thread.join(2.0)
                if not self._thread.is_alive():
                    loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
