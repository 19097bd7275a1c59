"""A causal beat tracker: tempo from the onset strength's autocorrelation, a phase-locked beat predictor.

Every UPDATE_SECONDS the tracker looks at the last WINDOW_SECONDS of onset strength:
- history: the part after the newest quiet stretch (`active_frames`: an intro without drums, a break),
  so the beat that has just come in is judged on itself;
- tempo: the autocorrelation's comb score (lags L, 2L, 3L, 4L) over periods in `tempo_range`,
  times a broad prior around 120 BPM, refined to a fraction of a frame; then the metre is checked on
  the beats themselves (`choose_metre`): of L, 2L, L/2 the beat is the fastest pulse inside
  `tempo_range` whose beats fall on onsets nearly as strong as the strongest pulse's, so hats between
  kick and snare do not double the tempo and kick-to-kick does not halve it. A locked beat keeps its
  metrical level through tempo changes and weak bars, and leaves a wrong one after OCTAVE_SWITCH_SECONDS;
- phase: the offset that puts a comb of beats (recent ones weighted most) on the strongest onsets;
- confidence: the comb's mean normalized autocorrelation (1 = perfectly periodic, ~0 = beatless).
Beats are predicted, not detected: once locked, a pulse fires when the clock reaches the predicted
beat, and each update pulls the prediction part of the way toward the new estimate.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from vj.audio.kernels import jit_cached
from vj.config.musical import MUSICAL_VARIABLES
from vj.audio.onsets import ACCENT, STRENGTH, OnsetStrength

TICKS_PER_FRAME = 10  # onset frames are 10 control ticks (about 10 ms)
WINDOW_SECONDS = 6.0  # onset history the estimate looks at
MEMORY_SECONDS = 3.0  # time constant of the weighting that favours recent onsets
MIN_SECONDS = 1.5  # history needed before a first estimate
UPDATE_SECONDS = 0.1
LOCK_CONFIDENCE = 0.3  # lock when confidence reaches this (on a full window; more on a shorter one) ...
UNLOCK_CONFIDENCE = 0.15  # ... and give up after HOLD_SECONDS below this one
BREAK_SECONDS = 1.5  # a break: the onsets of the last BREAK_SECONDS ...
BREAK_LEVEL = 0.1  # ... are this much weaker than the history's mean
HOLD_SECONDS = 4.0  # a locked beat coasts through breaks this long
TEMPO_SWITCH_SECONDS = 1.0  # a tempo more than SAME_TEMPO away must persist this long to replace the current
SAME_TEMPO = 0.04
TEMPO_CHANGE = 0.12  # a tempo change up to this much keeps the locked beat's metrical level
OCTAVE_SWITCH_SECONDS = 3.0  # another octave must win the metre check this long to replace the locked one
QUIET_LEVEL = 0.25  # history this much weaker than the recent onsets (a quiet intro, a break) ...
QUIET_SECONDS = 1.5  # ... for this long is cut off: it says nothing of the beat playing now
METRE_RATIOS = (1.0, 2.0, 0.5)  # relatives of the autocorrelation's period
METRE_SHARE = 0.7  # a pulse is the beat if its beats are this strong relative to the strongest relative's
METRE_KEEP = 0.6  # ... and a locked beat stays while its beats are this strong and no faster one passes
METRE_SECONDS = 4.5  # the metre is judged on this much recent history
METRE_BEATS = 4  # beats needed in the history before the metre can be told (and a lock made)
PHASE_GAIN = 0.5  # share of a phase error corrected per update
PRIOR_CENTRE_BPM = 120.0
PRIOR_OCTAVES = 1.0  # width (std) of the log-tempo prior
TAP_RESET_SECONDS = 2.0


@dataclass(frozen=True)
class BeatSettings:
    """The preset's beat options: fixed `bpm` (None = follow the audio), `tempo_range`, bar length, pulse decay."""

    bpm: float | None = None
    tempo_range: tuple = (60.0, 200.0)
    beats_per_bar: int = 4
    beat_decay: float = 0.1


@jit_cached
def _at(values, position):
    """`values` linearly interpolated at a fractional index, 0 outside the array (as np.interp with left=right=0)."""
    last = values.shape[0] - 1
    if position < 0.0 or position > last:
        return 0.0
    i = int(position)
    if i == last:
        return values[last]
    return values[i] + (position - i) * (values[i + 1] - values[i])


@lru_cache(maxsize=16)
def _lag_counts(n):
    """(FFT size, products per lag) of an n-sample autocorrelation."""
    return scipy.fft.next_fast_len(2 * n, real=True), n - np.arange(n, dtype=np.float64)


def autocorrelation(x):
    """Unbiased autocorrelation r[L] = mean of x[n] x[n+L], for L = 0..len(x)-1."""
    size, counts = _lag_counts(len(x))
    spectrum = scipy.fft.rfft(x, size)
    return scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2, size)[: len(x)] / counts


@jit_cached
def comb_scores(r, periods):
    """Mean of the normalized autocorrelation at L, 2L, 3L, 4L for each period L (frames); multiples
    beyond half the history, where r rests on few products, are left out."""
    half = r.shape[0] / 2  # r has one lag per frame of history
    out = np.empty(periods.shape[0])
    for j in range(periods.shape[0]):
        total = _at(r, periods[j])
        count = 1
        for k in range(2, 5):
            if k * periods[j] <= half:
                total += _at(r, k * periods[j])
                count += 1
        out[j] = total / count
    return out


@jit_cached
def strongest_period(r, periods, log_periods, prior):
    """(period frames, comb score) of the best comb score times the prior over the `periods` that fit twice
    in the history (a periodicity needs two periods to show), refined by a parabola through the neighbouring
    scores on the log-period grid; (0, 0) if none fits."""
    comb = comb_scores(r, periods)
    best = -1
    for j in range(periods.shape[0]):
        if 2 * periods[j] <= r.shape[0] and (best < 0 or comb[j] * prior[j] > comb[best] * prior[best]):
            best = j
    if best < 0:
        return 0.0, 0.0
    period = periods[best]
    if 0 < best < periods.shape[0] - 1:
        a, b, c = comb[best - 1], comb[best], comb[best + 1]
        denominator = a - 2 * b + c
        if denominator < 0:
            shift = 0.5 * (a - c) / denominator
            j = best if shift >= 0 else best - 1
            fraction = shift if shift >= 0 else shift + 1.0
            period = math.exp(log_periods[j] + fraction * (log_periods[j + 1] - log_periods[j]))
    return period, comb[best]


@lru_cache(maxsize=16)
def _memory_weights(n, frame_rate):
    """Weights of the last n onset frames: recent onsets count most."""
    return np.exp((np.arange(n) - n) / (MEMORY_SECONDS * frame_rate))


@lru_cache(maxsize=16)
def _tempo_grid(frame_rate, tempo_range):
    """Candidate periods (frames, a log-spaced grid over tempo_range), their logs and the tempo prior."""
    lo, hi = tempo_range
    periods = 60.0 * frame_rate / np.exp(np.arange(math.log(lo), math.log(hi), 0.002))
    prior = np.exp(-0.5 * (np.log2(60.0 * frame_rate / periods / PRIOR_CENTRE_BPM) / PRIOR_OCTAVES) ** 2)
    return periods, np.log(periods), prior


def estimate_tempo(onsets, frame_rate, tempo_range, fixed_period=None):
    """(period seconds, confidence) from onset strength; `fixed_period` only scores that period."""
    x = (onsets - onsets.sum() / len(onsets)) * _memory_weights(len(onsets), frame_rate)
    r = autocorrelation(x)
    if r[0] <= 1e-12:
        return None, 0.0
    r = r / r[0]
    if fixed_period is not None:
        return fixed_period, float(comb_scores(r, np.array([fixed_period * frame_rate]))[0])
    period, confidence = strongest_period(r, *_tempo_grid(frame_rate, tuple(tempo_range)))
    return (period / frame_rate if period else None), confidence


@jit_cached
def beat_strength(onsets, period, offset):
    """Mean onset strength at the beats of a comb with `period` frames whose newest beat is `offset`
    frames back from the end: each beat reads the strongest frame within 2 of it."""
    total = 0.0
    count = 0
    position = onsets.shape[0] - 1 - offset
    while position >= 1:
        strongest = 0.0
        for d in range(-2, 3):
            strongest = max(strongest, _at(onsets, position + d))
        total += strongest
        count += 1
        position -= period
    return total / max(count, 1)


@jit_cached
def estimate_phase(onsets, period):
    """Frames from the newest frame back to the most recent beat of a comb with `period` frames
    (the offset whose beats, recent ones weighted most, land on the strongest onsets)."""
    n = onsets.shape[0]
    count = max(1, int(n // period))
    score = np.empty(int(math.ceil(period)))
    for offset in range(score.shape[0]):
        total = 0.0
        weight = 1.0
        for k in range(count):
            total += weight * _at(onsets, n - 1 - offset - period * k)
            weight *= 0.85
        score[offset] = total
    best = np.argmax(score)
    size = score.shape[0]
    a, b, c = score[(best - 1) % size], score[best], score[(best + 1) % size]  # the comb is periodic in offset
    denominator = a - 2 * b + c
    shift = 0.5 * (a - c) / denominator if denominator < 0 else 0.0
    return (best + shift) % period


@jit_cached
def choose_metre(onsets, period, shortest, longest, prefer):
    """The beat among the metrical relatives of `period` (frames): the fastest pulse between the periods
    `shortest` and `longest` (tempo_range) whose beats are nearly as strong as those of the strongest
    relative; subdivisions that put every second pulse on a weak onset (hats between kick and snare)
    score lower and lose.

    Returns (best, near, stands, checked): `best` is that pulse; `near` the relative within TEMPO_CHANGE of
    a `prefer`red period (the beat already locked; 0 for none), the locked beat's metrical level at the
    tempo playing now (0 if none); it `stands` while its beats are at least METRE_KEEP as strong as the
    strongest relative's (or not yet scored) and no faster relative passes the test. Not checked while the
    history holds fewer than METRE_BEATS beats of `period`.
    """
    candidates = np.empty(len(METRE_RATIOS))
    scores = np.full(len(METRE_RATIOS), -1.0)  # -1: fewer than METRE_BEATS beats in the history, not scored
    near = -1
    for i, ratio in enumerate(METRE_RATIOS):
        candidates[i] = period * ratio
        if candidates[i] * METRE_BEATS <= onsets.shape[0]:
            scores[i] = beat_strength(onsets, candidates[i], estimate_phase(onsets, candidates[i]))
        if prefer > 0 and abs(candidates[i] / prefer - 1) <= TEMPO_CHANGE:
            near = i
    near_period = candidates[near] if near >= 0 else 0.0
    if scores[0] < 0:  # METRE_RATIOS[0] is the period itself
        return period, near_period, True, False
    strongest = scores.max()
    best = -1.0
    for i in range(len(METRE_RATIOS)):
        if shortest <= candidates[i] <= longest and scores[i] >= METRE_SHARE * strongest:
            if best < 0 or candidates[i] < best:
                best = candidates[i]
    if best < 0:
        return period, near_period, True, False
    if near < 0:
        return best, 0.0, True, True
    stands = candidates[near] <= best and (scores[near] < 0 or scores[near] >= METRE_KEEP * strongest)
    return best, near_period, stands, True


def active_frames(onsets, frame_rate):
    """How many of the newest onset frames to read: those after the newest QUIET_SECONDS whose mean is
    under QUIET_LEVEL times that of the last BREAK_SECONDS (a quiet intro before the drums came in, a
    break), since that stretch says nothing of the beat playing now and would drown its short history.
    A quiet stretch may end in up to QUIET_LEVEL of its length of the music coming in: its onsets as
    strong as the recent mean stay. All of them if the newest QUIET_SECONDS are quiet (the music stopping:
    the break check's case)."""
    span = int(round(QUIET_SECONDS * frame_rate))
    if len(onsets) <= span:
        return len(onsets)
    backward = onsets[::-1]  # newest first
    sums = np.cumsum(backward)
    means = (sums[span - 1 :] - np.concatenate(([0.0], sums[:-span]))) / span  # [k]: frames k .. k+span-1 back
    recent = onsets[-int(BREAK_SECONDS * frame_rate) :].mean()
    quiet = np.flatnonzero(means < QUIET_LEVEL * recent)
    if not len(quiet) or quiet[0] == 0:
        return len(onsets)
    start = int(quiet[0])
    loud = np.flatnonzero(backward[start : start + int(QUIET_LEVEL * span)] >= recent)
    return start + (int(loud[-1]) + 1 if len(loud) else 0)


@jit_cached
def beat_values(times, clock, period, locked, decay, beats_per_bar, bar_offset, out):
    """The musical variables (rows in MUSICAL_VARIABLES order) at `times`; `clock` = (last beat, next
    beat, beat count) advances past every beat the times reach (a beat at time t counts from t on)."""
    last, upcoming, count = clock[0], clock[1], int(clock[2])
    for j in range(times.shape[0]):
        t = times[j]
        while locked and t >= upcoming:
            last, upcoming, count = upcoming, upcoming + period, count + 1
        out[0, j] = math.exp(-(t - last) / decay)
        if locked:
            interval = upcoming - last if count else period
            phase = min(max(1.0 - (upcoming - t) / interval, 0.0), 1.0 - 1e-9)
            position = (count - 1 - bar_offset) % beats_per_bar if count else beats_per_bar - 1
            out[1, j] = phase
            out[2, j] = (position + phase) / beats_per_bar
            out[3, j] = 60.0 / period
        else:
            out[1, j] = out[2, j] = out[3, j] = 0.0
        out[4, j] = count
    clock[0], clock[1], clock[2] = last, upcoming, count


def lock_confidence(share):
    """The confidence a first lock needs on `share` of a full window of history. The autocorrelation of a
    short history rests on few onsets: on randomly timed hits, 1 in 100 estimates on 3 s reaches 0.5, on
    6 s 0.2; synthesized steady drums read 0.4-0.8 at any length. So the need grows as the history shortens
    (after a cut by `active_frames`, or at the start)."""
    return LOCK_CONFIDENCE / min(share, 1.0)


class TapTimes:
    """Tap tempo: the mean interval of the last 5 taps; a pause over TAP_RESET_SECONDS starts a new series."""

    def __init__(self):
        self._times = []

    def add(self, t):
        """Count a tap at time t (seconds); the beat period it gives, or None before the second tap."""
        if self._times and not 0 < t - self._times[-1] <= TAP_RESET_SECONDS:
            self._times = []
        self._times = (self._times + [t])[-5:]
        return float(np.mean(np.diff(self._times))) if len(self._times) >= 2 else None


class BeatTracker:
    """Streams audio into the musical variables at the control rate (one column per control tick)."""

    def __init__(self, sample_rate, control_hop, settings=BeatSettings()):
        self.settings = settings
        self.sample_rate = int(sample_rate)
        self.control_hop = int(control_hop)
        self.onsets = OnsetStrength(sample_rate, control_hop * TICKS_PER_FRAME, STRENGTH)
        self.accents = OnsetStrength(sample_rate, control_hop * TICKS_PER_FRAME, ACCENT)
        self.frame_rate = self.onsets.frame_rate
        self._history = np.zeros((2, int(round(WINDOW_SECONDS * self.frame_rate))))  # strength, accent
        self._pending = np.zeros((2, 0))  # onset frames computed but not yet applied
        self._applied = 0  # onset frames applied to the state
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
        self._candidate = None  # (period, since) of a tempo waiting to replace the current
        self._octave_since = None  # since when the locked beat's metrical level has failed the metre check
        self._taps = TapTimes()

    # -- performer overrides -------------------------------------------------------------------
    @property
    def time(self):
        """Seconds of audio processed: the clock of `tap` and `downbeat` times."""
        return self._samples / self.sample_rate

    def tap(self, t):
        """A tap at time t: two or more taps (less than 2 s apart) set the tempo and put a beat on the tap."""
        period = self._taps.add(t)
        if period is None:
            return
        self.fixed_period = period
        self.period = self.fixed_period
        self.locked = True
        self.next_beat = t + self.period
        self.last_beat = max(self.last_beat, t - self.period) if self.last_beat < t else self.last_beat

    def follow_audio(self):
        """Forget tapped tempo: back to the preset's `bpm`, or to following the audio."""
        self._taps = TapTimes()
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
        new = np.stack((self.onsets.process(block), self.accents.process(block)))
        self._pending = np.concatenate((self._pending, new), axis=1)
        self._samples += len(block)
        total = self._samples // self.control_hop
        out = np.empty((len(MUSICAL_VARIABLES), total - self._ticks))
        k = self._ticks
        while k < total:
            # The state changes only at updates; the next one takes effect at tick `boundary`, whose end
            # is the end of the update's last onset frame: it applies once that tick is complete.
            update = (self._applied // self._update_every + 1) * self._update_every
            boundary = update * TICKS_PER_FRAME - 1
            end = min(total, boundary)
            if end > k:
                out[:, k - self._ticks : end - self._ticks] = self._tick_values(k, end)
                k = end
            if k == boundary < total:
                self._apply(update - self._applied)
        self._ticks = total
        return out

    def _apply(self, count):
        """Move `count` pending onset frames into the history, then update the estimate."""
        new, self._pending = self._pending[:, :count], self._pending[:, count:]
        self._history = np.concatenate((self._history[:, count:], new), axis=1)
        self._applied += count
        if self._applied >= MIN_SECONDS * self.frame_rate:
            self._update(self._applied * self.onsets.hop / self.sample_rate)

    def _update(self, now):
        """Re-estimate from the history at time `now` (the end of the newest onset frame)."""
        available = min(self._applied, self._history.shape[1])
        available = active_frames(self._history[0, -available:], self.frame_rate)
        if available < MIN_SECONDS * self.frame_rate:  # the music has just come in: too little of it yet
            return
        onsets, accents = self._history[:, -available:]
        period, confidence = estimate_tempo(onsets, self.frame_rate, self.settings.tempo_range, self.fixed_period)
        recent = onsets[-int(BREAK_SECONDS * self.frame_rate) :]
        # the music stopped: the history's beat is no evidence
        if recent.sum() / len(recent) < BREAK_LEVEL * onsets.sum() / len(onsets):
            confidence = 0.0
        self.confidence = confidence
        if period is None:
            self._lose(now)
            return
        best = kept = period * self.frame_rate  # frames
        stands = checked = True
        if self.fixed_period is None:
            recent = accents[-int(METRE_SECONDS * self.frame_rate) :]  # the metre of the music playing now
            current = self.period * self.frame_rate if self.locked else 0.0
            lo, hi = self.settings.tempo_range
            best, near, stands, checked = choose_metre(
                recent, best, 60.0 * self.frame_rate / hi, 60.0 * self.frame_rate / lo, current
            )
            kept = near or best
        needed = UNLOCK_CONFIDENCE if self.locked else lock_confidence(available / self._history.shape[1])
        if confidence < needed:
            self._lose(now)
            return
        self._low_since = None
        if self._octave_switch(not stands, now):
            kept = best
            self.period = best / self.frame_rate  # a wrong octave: no TEMPO_SWITCH_SECONDS wait
        period = kept / self.frame_rate
        offset = estimate_phase(accents, kept)
        newest = now - self.onsets.delay  # the newest frame's onset time
        anchor = newest - offset / self.frame_rate
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

    def _octave_switch(self, wrong, now):
        """Whether the locked beat's metrical level has now failed the metre check (`wrong`) for
        OCTAVE_SWITCH_SECONDS: a weak bar does not flip the octave, a wrong lock does not last."""
        if not wrong:
            self._octave_since = None
            return False
        if self._octave_since is None:
            self._octave_since = now
        if now - self._octave_since < OCTAVE_SWITCH_SECONDS:
            return False
        self._octave_since = None
        return True

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
            self._low_since = self._candidate = self._octave_since = None

    def _tick_values(self, start, end):
        """Variables for ticks start..end-1 with the current state (each tick's time is its end)."""
        times = (np.arange(start, end) + 1) * (self.control_hop / self.sample_rate)
        out = np.empty((len(MUSICAL_VARIABLES), len(times)))
        clock = np.array([self.last_beat, self.next_beat, self.count])
        beat_values(
            times,
            clock,
            self.period or 0.0,
            self.locked,
            self.settings.beat_decay,
            self.settings.beats_per_bar,
            self.bar_offset,
            out,
        )
        self.last_beat, self.next_beat, self.count = float(clock[0]), float(clock[1]), int(clock[2])
        return out
