"""One filter of `input_audio_filters` (a Band) and the check that its band fits a sample rate."""

from dataclasses import dataclass

from vj.config.musical import MUSICAL_VARIABLES
from vj.errors import AudioError
from vj.config.keys import BOOLEAN, NON_NEGATIVE, POSITIVE, REQUIRED, choice, in_range, key, or_auto, variable_name

ENVELOPES = ("rms", "peak")
NORMALIZATIONS = ("auto", "fixed", "none")


@dataclass(frozen=True)
class Band:
    """One filter of `input_audio_filters`: pytti's keys plus envelope, gain and onset (hit) options.

    Each field made with key() is the single definition of a filter key (check, default, meaning), read by
    preset validation, README's filter table and the JSON Schema.
    """

    variable_name: str = key(
        variable_name((MUSICAL_VARIABLES, f"a musical variable: {', '.join(MUSICAL_VARIABLES)}")),
        REQUIRED,
        "name of the variable in expressions; `NAME_prev` (and `NAME_hit` with `hit`) come with it, and none of "
        "them may clash with another variable",
    )
    f_center: float = key(POSITIVE, REQUIRED, "center frequency in Hz")
    f_width: float = key(
        POSITIVE,
        REQUIRED,
        "band width in Hz: the band is `f_center ± f_width/2`, which must lie "
        "above 0 Hz and below the track's Nyquist frequency",
    )
    order: int = key(in_range(1, 10, integer=True), 5, "Butterworth order, as `scipy.signal.butter`")
    envelope: str = key(
        choice(*ENVELOPES),
        "rms",
        "level detector: `rms` follows the band's energy (power over "
        "about 20 ms); `peak` follows the largest sample, jumpier on noisy "
        "bands such as hi-hats",
    )
    attack: float = key(NON_NEGATIVE, 0.005, "seconds for the level to rise (one-pole time constant)")
    release: float | str = key(
        or_auto(POSITIVE),
        "auto",
        "seconds for the level to fall (time constant); `auto` = min(0.15, max(0.04, "
        "2 / f_low)) with f_low = f_center − f_width/2: 0.04 s above 50 Hz, up to 0.15 s for "
        "deeper bands so held bass notes do not ripple",
    )
    gain: float = key(POSITIVE, 1, "multiplier applied to the value")
    normalize: str = key(
        choice(*NORMALIZATIONS),
        "auto",
        "`auto`: automatic gain to 0..1; `fixed`: 1 = a full-scale sine, clipped to 0..1; "
        "`none`: like `fixed`, unclipped",
    )
    agc_time: float = key(POSITIVE, 10, "seconds for the auto gain's peak tracker to fall")
    floor: float = key(POSITIVE, 0.001, "the auto gain never divides by less than this (silence stays 0)")
    hit: bool = key(
        BOOLEAN,
        False,
        "adds the variable `NAME_hit`, an onset detector on this band: 1 at a detected onset, then decaying",
    )
    hit_decay: float = key(POSITIVE, 0.15, "seconds: time constant of the decay of `NAME_hit`")
    hit_sensitivity: float = key(in_range(0, 1), 0.5, "onset sensitivity: higher detects more, softer onsets")

    @property
    def low(self):
        return self.f_center - self.f_width / 2

    @property
    def high(self):
        return self.f_center + self.f_width / 2

    @property
    def release_seconds(self):
        """`release`, with `auto` worked out from the band's lower edge (two of its periods, 0.04..0.15 s)."""
        if self.release != "auto":
            return self.release
        return min(0.15, max(0.04, 2.0 / self.low)) if self.low > 0 else 0.15


def check_band(band, sample_rate):
    """Raise AudioError naming the filter if its band does not fit the sample rate (None: not known yet, so only
    the lower edge is checked)."""
    name = band.variable_name
    if not 1 <= band.order <= 10:
        raise AudioError(f"filter '{name}': order {band.order} is outside 1..10")
    if band.f_width <= 0:
        raise AudioError(f"filter '{name}': f_width {band.f_width:g} Hz must be > 0")
    if sample_rate is None:
        if band.low <= 0:
            raise AudioError(
                f"filter '{name}': band {band.low:g}..{band.high:g} Hz (f_center +- f_width/2) must "
                "lie above 0 Hz (and below the track's Nyquist frequency, checked once the track is "
                "known)"
            )
        return
    nyquist = sample_rate / 2
    if band.low <= 0 or band.high >= nyquist:
        raise AudioError(
            f"filter '{name}': band {band.low:g}..{band.high:g} Hz (f_center +- f_width/2) must lie inside "
            f"0 < f < {nyquist:g} Hz (the Nyquist frequency of {sample_rate} Hz audio)"
        )
