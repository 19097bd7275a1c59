import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vj.preset import PresetError, load_preset

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text, name="p.yaml"):
    """Write a preset's text to a file and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path):
    """The problems a preset file is refused with (it must be refused)."""
    with pytest.raises(PresetError) as info:
        load_preset(path)
    return info.value.problems


def tone(freq, seconds, sr=48000, amp=0.5, start=0.0):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t + start)).astype(np.float32)


@pytest.fixture
def write_audio(tmp_path):
    """Write a signal to an audio file and return its path."""
    def write(signal, sr=48000, name="track.wav", **kw):
        path = tmp_path / name
        soundfile.write(str(path), signal, sr, **kw)
        return path
    return write


def run_vj(*args, cwd=ROOT):
    """Run the real `vj` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "vj", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def closed_port():
    """A loopback port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty hub cache in tmp_path, online mode, and the hub's endpoint at a closed loopback port."""
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    return tmp_path / "hub"
