"""The sound card input of `vj live`: a PortAudio input device as an AudioSource, its chosen channels mixed down to
mono as they arrive, kept alive through a lost device."""

from vj.audio.sources.devices import LiveAudioError, check_latency, portaudio, resolve_device
from vj.audio.sources.files import to_mono
from vj.reconnect import STALL_SECONDS
from vj.audio.sources.kept_stream import KeptStream


class LiveInput:
    """A sound card input (PortAudio) as an AudioSource: mono float32 at `sample_rate`, as it arrives.

    `device`: a part of its name, its index, or None for the default input. `channels`: 1-based channel
    numbers mixed down to mono; None = channels 1 and 2 (1 on a mono device): ALSA's virtual devices ('pulse',
    'default') report 32 channels, most of them upmixed copies. A lost device is reopened in the background;
    meanwhile `read` gives silence at the real-time rate and `warning` says so.
    """

    def __init__(
        self, device=None, sample_rate=None, channels=None, blocksize=0, latency="high", stall_timeout=STALL_SECONDS
    ):
        sd = portaudio()
        latency = check_latency(latency)
        index = resolve_device(sd, device, "input")
        info = sd.query_devices(index)
        available = info["max_input_channels"]
        if channels is None:
            channels = [1, 2][:available]
        channels = list(channels)
        if not channels or not all(isinstance(c, int) and 1 <= c <= available for c in channels):
            raise LiveAudioError(
                f"audio input {index} '{info['name']}' has {available} channel(s); channels must "
                f"be numbers 1..{available} (got {channels})"
            )
        self.channels = channels
        self.sample_rate = int(sample_rate or info["default_samplerate"])
        # at least 2 channels where there are 2: asked for 1, ALSA's plug and pulse devices give the mono mix
        opened = max(max(channels), min(2, available))
        self._select = None if channels == list(range(1, opened + 1)) else [c - 1 for c in channels]

        def open_stream(at):
            return sd.InputStream(
                device=at,
                samplerate=self.sample_rate,
                channels=opened,
                dtype="float32",
                blocksize=blocksize,
                latency=latency,
                callback=self._callback,
            )

        self._kept = KeptStream("input", device, index, open_stream, opened, self.sample_rate, stall_timeout)
        self._kept.open()

    def _callback(self, indata, frames, time_info, status):
        """PortAudio thread: copy the block into the ring, nothing else."""
        self._kept.store(indata, status)

    @property
    def warning(self):
        """A short text for the HUD while the input is lost or glitching; None when fine."""
        return self._kept.warning

    def read(self, frames, timeout=0.0):
        """Up to `frames` mono samples available now (maybe none), waiting at most `timeout` s for some."""
        block = self._kept.read(frames, timeout)
        return to_mono(block if self._select is None else block[:, self._select])

    @property
    def arrival(self):
        """time.monotonic() at which the last sample `read` returned reached the callback."""
        return self._kept.arrival

    def close(self):
        self._kept.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
