"""Audio analysis: sources, a Butterworth filter bank, envelopes with automatic gain, per-frame values."""

from vj.audio.analysis import AudioAnalyzer
from vj.config.bands import Band
from vj.audio.filters import FilterBank
from vj.audio.sources.files import ArraySource, AudioError, AudioSource, FileSource

__all__ = ["AudioAnalyzer", "ArraySource", "AudioError", "AudioSource", "Band", "FileSource", "FilterBank"]
