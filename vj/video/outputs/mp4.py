"""An MP4 writer (PyAV): H.264 yuv420p video plus the matching span of the track as AAC."""

from fractions import Fraction

import av
import numpy as np
import soundfile


def read_track(path, start, duration):
    """(samples (channels<=2, n) float32, sample rate) of [start, start + duration), padded with silence."""
    with soundfile.SoundFile(str(path)) as f:
        sr = f.samplerate
        f.seek(min(f.frames, int(round(start * sr))))
        n = int(round(duration * sr))
        data = f.read(n, dtype="float32", always_2d=True)[:, :2]
    if len(data) < n:
        data = np.concatenate([data, np.zeros((n - len(data), data.shape[1]), np.float32)])
    return np.ascontiguousarray(data.T), sr


class Mp4Writer:
    """Write frames one by one; the audio is written in step, so a file closed early stays in sync."""

    def __init__(self, path, fps, width, height, audio=None):
        self.container = av.open(str(path), "w")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.video = self.container.add_stream("libx264", rate=self.fps)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.options = {"crf": "18", "preset": "veryfast"}
        self.audio, self.samples, self.rate = None, None, None
        if audio is not None:
            self.samples, self.rate = audio
            layout = "stereo" if self.samples.shape[0] == 2 else "mono"
            self.audio = self.container.add_stream("aac", rate=self.rate, layout=layout)
        self.frames = 0
        self._audio_pos = 0

    def write(self, rgb):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.frames
        self.container.mux(self.video.encode(frame))
        self.frames += 1
        if self.audio is not None:
            end = min(self.samples.shape[1], int(round(self.frames / self.fps * self.rate)))
            if end > self._audio_pos:
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(self.samples[:, self._audio_pos : end]),
                    format="fltp",
                    layout=self.audio.layout.name,
                )
                chunk.sample_rate, chunk.pts = self.rate, self._audio_pos
                self.container.mux(self.audio.encode(chunk))
                self._audio_pos = end

    def close(self):
        self.container.mux(self.video.encode())
        if self.audio is not None:
            self.container.mux(self.audio.encode())
        self.container.close()
