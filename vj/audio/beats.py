"""A causal beat tracker: tempo from the onset strength's autocorrelation, a phase-locked beat predictor.

Every UPDATE_SECONDS the tracker looks at the last WINDOW_SECONDS of onset strength:
- tempo: the autocorrelation's comb score (lags L, 2L, 3L, 4L) over periods in `tempo_range`,
  times a broad prior around 120 BPM, refined to a fraction of a frame; then the metre is checked on
  the beats themselves (`choose_metre`): of L, 2L, L/2, 3L/2, 2L/3, 3L, L/3 the beat is the fastest
  pulse inside `tempo_range` whose beats fall on onsets nearly as strong as the strongest pulse's,
  so hats between kick and snare do not double the tempo and kick-to-kick does not halve it;
- phase: the offset that puts a comb of beats (recent ones weighted most) on the strongest onsets;
- confidence: the comb's mean normalized autocorrelation (1 = perfectly periodic, ~0 = beatless).
Beats are predicted, not detected: once locked, a pulse fires when the clock reaches the predicted
beat, and each update pulls the prediction part of the way toward the new estimate.
"""

import math
from dataclasses import dataclass

import numpy as np

from vj.audio.musical import MUSICAL_VARIABLES
from vj.audio.onsets import OnsetStrength

TICKS_PER_FRAME = 10          # onset frames are 10 control ticks (about 10 ms)
WINDOW_SECONDS = 6.0          # onset history the estimate looks at
MEMORY_SECONDS = 3.0          # time constant of the weighting that favours recent onsets
MIN_SECONDS = 1.5             # history needed before a first estimate
UPDATE_SECONDS = 0.1
LOCK_CONFIDENCE = 0.3         # lock when confidence reaches this ...
UNLOCK_CONFIDENCE = 0.15      # ... and give up after HOLD_SECONDS below this one
BREAK_SECONDS = 1.5           # a break: the onsets of the last BREAK_SECONDS ...
BREAK_LEVEL = 0.1             # ... are this much weaker than the history's mean
HOLD_SECONDS = 4.0            # a locked beat coasts through breaks this long
TEMPO_SWITCH_SECONDS = 1.0    # a tempo more than SAME_TEMPO away must persist this long to replace the current
SAME_TEMPO = 0.04
METRE_RATIOS = (1.0, 2.0, 0.5, 1.5, 2 / 3, 3.0, 1 / 3)   # relatives of the autocorrelation's period
METRE_SHARE = 0.7             # a pulse is the beat if its beats are this strong relative to the strongest relative's
METRE_KEEP = 0.5              # ... and a locked beat stays while its beats are this strong (no octave flips)
METRE_SECONDS = 4.5           # the metre is judged on this much recent history
METRE_BEATS = 4               # beats needed in the history before the metre can be told (and a lock made)
PHASE_GAIN = 0.5              # share of a phase error corrected per update
PRIOR_CENTRE_BPM = 120.0
PRIOR_OCTAVES = 1.0           # width (std) of the log-tempo prior
TAP_RESET_SECONDS = 2.0


@dataclass(frozen=True)
class BeatSettings:
    """The preset's beat options: fixed `bpm` (None = follow the audio), `tempo_range`, bar length, pulse decay."""

    bpm: float | None = None
    tempo_range: tuple = (60.0, 200.0)
    beats_per_bar: int = 4
    beat_decay: float = 0.1


@dataclass
class Estimate:
    period: float       # seconds
    anchor: float       # time of a beat (seconds)
    confidence: float


def _interp(values, positions):
    return np.interp(positions, np.arange(len(values)), values, left=0.0, right=0.0)


def autocorrelation(x):
    """Unbiased autocorrelation r[L] = mean of x[n] x[n+L], for L = 0..len(x)-1."""
    n = len(x)
    size = 1 << int(math.ceil(math.log2(2 * n)))
    spectrum = np.fft.rfft(x, size)
    r = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, size)[:n]
    return r / (n - np.arange(n))


def estimate_tempo(onsets, frame_rate, tempo_range, fixed_period=None):
    """(period seconds, confidence) from onset strength; `fixed_period` only scores that period."""
    n = len(onsets)
    weights = np.exp((np.arange(n) - n) / (MEMORY_SECONDS * frame_rate))  # recent onsets count most
    x = (onsets - onsets.mean()) * weights
    r = autocorrelation(x)
    if r[0] <= 1e-12:
        return None, 0.0
    r = r / r[0]
    lo, hi = tempo_range
    if fixed_period is not None:
        periods = np.array([fixed_period * frame_rate])
    else:
        bpms = np.exp(np.arange(math.log(lo), math.log(hi), 0.002))
        periods = 60.0 * frame_rate / bpms
    multiples = np.arange(1, 5)[:, None] * periods[None, :]
    usable = multiples <= n / 2
    usable[0] = True
    comb = np.where(usable, _interp(r, multiples), 0.0).sum(axis=0) / usable.sum(axis=0)
    if fixed_period is not None:
        return fixed_period, float(comb[0])
    prior = np.exp(-0.5 * (np.log2(60.0 * frame_rate / periods / PRIOR_CENTRE_BPM) / PRIOR_OCTAVES) ** 2)
    best = int(np.argmax(comb * prior))
    if 0 < best < len(periods) - 1:  # parabolic refinement on the log-period grid
        a, b, c = comb[best - 1:best + 2]
        denominator = a - 2 * b + c
        shift = 0.5 * (a - c) / denominator if denominator < 0 else 0.0
        period = float(np.exp(np.interp(best + shift, np.arange(len(periods)), np.log(periods))))
    else:
        period = float(periods[best])
    return period / frame_rate, float(comb[best])


def beat_strengths(onsets, period, offset, count):
    """Onset strength at the last `count` beats (newest first), `offset` frames back from the end."""
    positions = len(onsets) - 1 - offset - period * np.arange(count)
    positions = positions[positions >= 1]
    near = positions[:, None] + np.arange(-2, 3)[None, :]
    return _interp(onsets, near).max(axis=1)


def estimate_phase(onsets, period):
    """Frames from the newest frame back to the most recent beat of a comb with `period` frames."""
    offsets = np.arange(0.0, math.ceil(period))
    count = max(1, int(len(onsets) // period))
    weights = 0.85 ** np.arange(count)
    positions = len(onsets) - 1 - offsets[:, None] - period * np.arange(count)[None, :]
    score = (_interp(onsets, positions) * weights).sum(axis=1)
    best = int(np.argmax(score))
    a, b, c = score[best - 1], score[best], score[(best + 1) % len(score)]  # the comb is periodic in offset
    denominator = a - 2 * b + c
    shift = 0.5 * (a - c) / denominator if denominator < 0 else 0.0
    return float((best + shift) % period)


def choose_metre(onsets, period, tempo_range, frame_rate, prefer=None):
    """The beat among the metrical relatives of `period` (frames): the fastest pulse in tempo_range
    whose beats are nearly as strong as those of the strongest relative; subdivisions that put
    every second pulse on a weak onset (hats between kick and snare) score lower and lose.

    A `prefer`red period (the beat already locked) that is allowed and twice or half the winner is kept,
    so a locked tempo does not flip octaves on a weak bar. Returns (period, checked); not checked while
    the history holds fewer than METRE_BEATS beats of it.
    """
    lo, hi = tempo_range
    scores = {}
    for ratio in METRE_RATIOS:  # only pulses with METRE_BEATS beats in the history: fewer would be chance
        candidate = period * ratio
        if candidate * METRE_BEATS <= len(onsets):
            offset = estimate_phase(onsets, candidate)
            count = int((len(onsets) - 1 - offset) // candidate) + 1
            scores[candidate] = beat_strengths(onsets, candidate, offset, count).mean()
    if period not in scores:
        return period, False
    strongest = max(scores.values())
    allowed = [c for c in scores if lo <= 60.0 * frame_rate / c <= hi and scores[c] >= METRE_SHARE * strongest]
    if not allowed:
        return period, False
    best = min(allowed)
    if prefer is not None and any(abs(prefer / best / r - 1) <= SAME_TEMPO for r in (0.5, 2.0)):
        kept = [c for c in scores if abs(c / prefer - 1) <= SAME_TEMPO and scores[c] >= METRE_KEEP * strongest]
        best = kept[0] if kept else best
    return best, True


class BeatTracker:
    """Streams audio into the musical variables at the control rate (one column per control tick)."""

    def __init__(self, sample_rate, control_hop, settings=BeatSettings()):
        self.settings = settings
        self.sample_rate = int(sample_rate)
        self.control_hop = int(control_hop)
        self.onsets = OnsetStrength(sample_rate, control_hop * TICKS_PER_FRAME)
        self.frame_rate = self.onsets.frame_rate
        self._history = np.zeros(int(round(WINDOW_SECONDS * self.frame_rate)))
        self._pending = np.zeros(0)         # onset frames computed but not yet applied
        self._applied = 0                   # onset frames applied to the state
        self._ticks = 0
        self._samples = 0
        self._update_every = max(1, int(round(UPDATE_SECONDS * self.frame_rate)))
        self.fixed_period = None if settings.bpm is None else 60.0 / settings.bpm
        self.period = self.fixed_period
        self.locked = self.fixed_period is not None
        self.next_beat = 0.0 if self.locked else math.inf
        self.last_beat = -math.inf
        self.count = 0
        self.bar_offset = 0
        self.confidence = 0.0
        self._low_since = None
        self._candidate = None              # (period, since) of a tempo waiting to replace the current
        self._taps = []

    # -- performer overrides -------------------------------------------------------------------
    def tap(self, t):
        """A tap at time t: two or more taps (less than 2 s apart) set the tempo and put a beat on the tap."""
        if self._taps and t - self._taps[-1] > TAP_RESET_SECONDS:
            self._taps = []
        self._taps = (self._taps + [t])[-5:]
        if len(self._taps) < 2:
            return
        self.fixed_period = float(np.mean(np.diff(self._taps)))
        self.period = self.fixed_period
        self.locked = True
        self.next_beat = t + self.period
        self.last_beat = max(self.last_beat, t - self.period) if self.last_beat < t else self.last_beat

    def follow_audio(self):
        """Forget tapped tempo: back to the preset's `bpm`, or to following the audio."""
        self._taps = []
        self.fixed_period = None if self.settings.bpm is None else 60.0 / self.settings.bpm

    def downbeat(self, t):
        """The beat nearest to time t is the first of a bar."""
        if not self.locked or self.period is None:
            return
        since = t - self.last_beat
        number = self.count + (1 if since > self.period / 2 else 0)  # count of the nearest beat
        self.bar_offset = (number - 1) % self.settings.beats_per_bar

    # -- streaming -----------------------------------------------------------------------------
    def process(self, block):
        """Musical variables (len(MUSICAL_VARIABLES), n_new_ticks) for the control ticks completed by `block`."""
        self._pending = np.concatenate((self._pending, self.onsets.process(block)))
        self._samples += len(block)
        total = self._samples // self.control_hop
        out = np.empty((len(MUSICAL_VARIABLES), total - self._ticks))
        k = self._ticks
        while k < total:
            # The state changes only at updates; the next one takes effect at the end of tick `boundary`,
            # when its last onset frame is complete.
            update = (self._applied // self._update_every + 1) * self._update_every
            boundary = update * TICKS_PER_FRAME - 1
            end = min(total, boundary)
            if end > k:
                out[:, k - self._ticks:end - self._ticks] = self._tick_values(k, end)
                k = end
            if k == boundary:
                self._apply(update - self._applied)
        self._ticks = total
        return out

    def _apply(self, count):
        """Move `count` pending onset frames into the history, then update the estimate."""
        new, self._pending = self._pending[:count], self._pending[count:]
        self._history = np.concatenate((self._history[count:], new))
        self._applied += count
        if self._applied >= MIN_SECONDS * self.frame_rate:
            self._update(self._applied * self.onsets.hop / self.sample_rate)

    def _update(self, now):
        """Re-estimate from the history at time `now` (the end of the newest onset frame)."""
        available = min(self._applied, len(self._history))
        onsets = self._history[-available:]
        period, confidence = estimate_tempo(onsets, self.frame_rate, self.settings.tempo_range, self.fixed_period)
        recent = onsets[-int(BREAK_SECONDS * self.frame_rate):]
        if recent.mean() < BREAK_LEVEL * onsets.mean():  # the music stopped: the history's beat is no evidence
            confidence = 0.0
        self.confidence = confidence
        if period is None:
            self._lose(now)
            return
        checked = True
        if self.fixed_period is None:
            recent = onsets[-int(METRE_SECONDS * self.frame_rate):]  # the metre of the music playing now
            current = self.period * self.frame_rate if self.locked else None
            period, checked = choose_metre(recent, period * self.frame_rate, self.settings.tempo_range,
                                           self.frame_rate, current)
            period /= self.frame_rate
        offset = estimate_phase(onsets, period * self.frame_rate)
        newest = now - self.onsets.delay  # the newest frame's onset time
        anchor = newest - offset / self.frame_rate
        if confidence < (UNLOCK_CONFIDENCE if self.locked else LOCK_CONFIDENCE):
            self._lose(now)
            return
        self._low_since = None
        if not self.locked:
            if not checked:
                return
            self.locked, self.period = True, period
            self.next_beat = anchor + period * math.ceil((now - anchor) / period + 1e-9)
            self.last_beat = -math.inf
            return
        self._follow_tempo(period, now)
        target = anchor + self.period * round((self.next_beat - anchor) / self.period)
        self.next_beat += PHASE_GAIN * (target - self.next_beat)

    def _follow_tempo(self, period, now):
        if self.fixed_period is not None:
            self.period = self.fixed_period
        elif abs(period / self.period - 1) <= SAME_TEMPO:
            self._candidate = None
            self.period += 0.5 * (period - self.period)
        elif self._candidate is None or abs(period / self._candidate[0] - 1) > SAME_TEMPO:
            self._candidate = (period, now)
        elif now - self._candidate[1] >= TEMPO_SWITCH_SECONDS:
            self.period, self._candidate = period, None

    def _lose(self, now):
        """Low confidence: a fixed tempo free-runs; a followed one coasts for HOLD_SECONDS, then unlocks."""
        if not self.locked or self.fixed_period is not None:
            return
        if self._low_since is None:
            self._low_since = now
        elif now - self._low_since >= HOLD_SECONDS:
            self.locked, self.period, self.next_beat = False, None, math.inf
            self._low_since = self._candidate = None

    def _tick_values(self, start, end):
        """Variables for ticks start..end-1 with the current state (each tick's time is its end)."""
        times = (np.arange(start, end) + 1) * (self.control_hop / self.sample_rate)
        out = np.zeros((len(MUSICAL_VARIABLES), len(times)))
        bpb = self.settings.beats_per_bar
        first = 0
        while first < len(times):
            # ticks before the next beat share last_beat; a beat splits the span
            split = len(times) if not self.locked else int(np.searchsorted(times, self.next_beat))
            if split > first:
                span = times[first:split]
                out[0, first:split] = np.exp(-(span - self.last_beat) / self.settings.beat_decay)
                if self.locked:
                    interval = self.next_beat - self.last_beat if self.count else self.period
                    phase = np.clip(1.0 - (self.next_beat - span) / interval, 0.0, 1.0 - 1e-9)
                    position = (self.count - 1 - self.bar_offset) % bpb if self.count else bpb - 1
                    out[1, first:split] = phase
                    out[2, first:split] = (position + phase) / bpb
                    out[3, first:split] = 60.0 / self.period
                out[4, first:split] = self.count
                first = split
            if first < len(times):
                self.last_beat = self.next_beat
                self.next_beat += self.period
                self.count += 1
        return out
