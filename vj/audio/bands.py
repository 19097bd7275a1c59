"""One filter of `input_audio_filters` (a Band) and the check that its band fits a sample rate."""

from dataclasses import dataclass

from vj.audio.sources import AudioError

ENVELOPES = ("peak", "rms")
NORMALIZATIONS = ("auto", "fixed", "none")


@dataclass(frozen=True)
class Band:
    """One filter of `input_audio_filters`: pytti's keys plus envelope and gain options."""

    variable_name: str
    f_center: float
    f_width: float
    order: int = 5
    envelope: str = "peak"
    attack: float = 0.005
    release: float = 0.15
    gain: float = 1.0
    normalize: str = "auto"
    agc_time: float = 10.0
    floor: float = 0.001

    @property
    def low(self):
        return self.f_center - self.f_width / 2

    @property
    def high(self):
        return self.f_center + self.f_width / 2


def check_band(band, sample_rate):
    """Raise AudioError naming the filter if its band does not fit the sample rate."""
    nyquist = sample_rate / 2
    name = band.variable_name
    if not 1 <= band.order <= 10:
        raise AudioError(f"filter '{name}': order {band.order} is outside 1..10")
    if band.f_width <= 0:
        raise AudioError(f"filter '{name}': f_width {band.f_width:g} Hz must be > 0")
    if band.low <= 0 or band.high >= nyquist:
        raise AudioError(
            f"filter '{name}': band {band.low:g}..{band.high:g} Hz (f_center +- f_width/2) must lie inside "
            f"0 < f < {nyquist:g} Hz (the Nyquist frequency of {sample_rate} Hz audio)")
