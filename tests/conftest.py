import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vj.config.loading import PresetError, load_preset

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


def interrupt_after_frames(args, frames=5):
    """Start `vj ARGS`, send it a real SIGINT once its progress bar shows `frames` frames or more, and return (exit
    status, what it printed after the signal)."""
    import re
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "vj", *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen = ""
    while not any(int(n) >= frames for n in re.findall(r"(\d+)/\d+ \[", seen)):
        char = proc.stderr.read(1)
        assert char, f"vj {args[0]} ended before frame {frames}: {seen[-500:]}"
        seen += char
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    return proc.wait(timeout=60), rest


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


def tiny_autoencoder_kl():
    """A small AutoencoderKL (SD's VAE shape) with seeded random weights: the tests run the KL path of the engine
    with it."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[8, 16, 16, 16],
        layers_per_block=1,
        norm_num_groups=8,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
    )


@pytest.fixture(scope="module")
def tiny():
    """The tiny diffusion model's components on the CPU (one load per test module)."""
    from vj.engine.diffusion.models import load_components

    return load_components("tiny", device="cpu")


@pytest.fixture(scope="module", params=["taesd", "kl"])
def model(request, tiny):
    """The tiny model with its own TAESD-shaped VAE, and with a KL autoencoder (the VAE of real SD models)."""
    if request.param == "taesd":
        return tiny
    import dataclasses

    import torch

    kl = tiny_autoencoder_kl().eval().requires_grad_(False).to(memory_format=torch.channels_last)
    return dataclasses.replace(tiny, vae=kl)
