"""Audio sources behind one interface: `sample_rate` and `read(n)` returning mono float32 samples."""

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import soundfile

from vj.config.tracks import audio_info
from vj.errors import AudioError


@runtime_checkable
class AudioSource(Protocol):
    """What the analysis reads from: a file, a numpy signal, or the live input."""

    sample_rate: int

    def read(self, frames: int) -> np.ndarray:
        """Up to `frames` mono float32 samples; fewer (or none) once the source has ended."""

    def close(self) -> None:
        """Let the file or device go (nothing for sources held in memory)."""


def to_mono(samples):
    """Mix (n, channels) or (n,) samples down to float32 mono with non-finite values zeroed."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)


class ArraySource:
    """A numpy signal as a source (tests, generated signals)."""

    def __init__(self, signal, sample_rate, offset=0.0):
        self.sample_rate = int(sample_rate)
        self._signal = to_mono(signal)
        self._pos = int(round(offset * self.sample_rate))

    def read(self, frames):
        out = self._signal[self._pos : self._pos + frames]
        self._pos += len(out)
        return out

    def close(self):
        pass


class SilenceSource:
    """Endless silence: the input of a show without audio (a fixed `bpm` still runs the beat)."""

    def __init__(self, sample_rate=48000):
        self.sample_rate = int(sample_rate)

    def read(self, frames):
        return np.zeros(frames, np.float32)

    def close(self):
        pass


class FileSource:
    """An audio file streamed from `offset` seconds on, mixed down to mono."""

    def __init__(self, path, offset=0.0):
        info = audio_info(path)
        self.path = Path(path)
        self.sample_rate = int(info.samplerate)
        self.duration = info.frames / info.samplerate - offset
        if offset < 0 or offset >= info.frames / info.samplerate:
            raise AudioError(
                f"input_audio_offset {offset:g} s is outside '{path}' (0 to {info.frames / info.samplerate:.3f} s)"
            )
        self._file = soundfile.SoundFile(str(path))
        self._file.seek(int(round(offset * self.sample_rate)))

    def read(self, frames):
        return to_mono(self._file.read(frames, dtype="float32", always_2d=True))

    def close(self):
        self._file.close()
