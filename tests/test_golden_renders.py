"""Renders of the same preset, seed and model stay the frames they were before the redesign (issue 17).

tests/data/golden_renders.npz holds the frames `vj render --frames` wrote for a few presets with the tiny model,
recorded before issue 17 moved the code (run this file as a script to record them again, only when a change is
meant to alter frames). On the machine kind that recorded them (same torch and CPU capability) frames must be
bit-identical; elsewhere float kernels may round differently, so each pixel may differ by at most 2 levels.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vj import cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "data" / "golden_renders.npz"
COMMON = ["--model", "tiny", "--width", "64", "--height", "64", "--fps", "8", "--device", "cpu"]

# name -> (preset file, extra render options)
CASES = {
    "pytti_example": (
        "presets/pytti_audio_example.yaml",
        ["--audio", str(ROOT / "presets/audio/demo_beat.flac"), "--duration", "0.5"],
    ),
    "guidance": ("presets/everything.yaml", ["--duration", "0.5"]),
    "pixel_model": ("presets/palette.yaml", ["--duration", "0.5"]),
    "latent_blend": ("presets/demo.yaml", ["--start", "3.5", "--duration", "1"]),
}


def fingerprint():
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


def render(name, work):
    """The frames `vj render` writes for case `name` (uint8, frames x H x W x 3)."""
    source, options = CASES[name]
    preset = ROOT / source
    if name == "latent_blend":  # demo.yaml with latent-blend transitions across its scene change
        preset = work / "demo_latent_blend.yaml"
        text = (ROOT / source).read_text().replace("input_audio: audio/", f"input_audio: {ROOT}/presets/audio/")
        preset.write_text(text + "transition_mode: latent_blend\ntransition_quality: lowest\n")
    frames = work / name
    status = cli.main(
        ["render", str(preset), "-o", str(work / f"{name}.mp4"), "--frames", str(frames), *COMMON, *options]
    )
    assert status == 0
    return np.stack([np.asarray(Image.open(p)) for p in sorted(frames.glob("frame_*.png"))])


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # latent-blend transitions computed afresh
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_matches_the_frames_recorded_before_the_redesign(name, isolated_cache):
    golden = np.load(GOLDEN)
    recorded_on = json.loads(str(golden["fingerprint"]))
    expected = golden[name]
    frames = render(name, isolated_cache)
    assert frames.shape == expected.shape
    diff = np.abs(frames.astype(np.int16) - expected.astype(np.int16))
    if recorded_on == fingerprint():
        assert diff.max() == 0, f"{name}: {np.count_nonzero(diff)} values differ (up to {diff.max()})"
    else:
        assert diff.max() <= 2, f"{name}: frames differ by up to {diff.max()} levels"


def record(work):
    """Render every case and store the frames with the machine's fingerprint."""
    frames = {name: render(name, work) for name in CASES}
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, fingerprint=json.dumps(fingerprint()), **frames)
    print(f"recorded {', '.join(f'{k} {v.shape}' for k, v in frames.items())} to {GOLDEN}")


if __name__ == "__main__":
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        os.environ["XDG_CACHE_HOME"] = str(Path(work) / "cache")
        record(Path(work))
    sys.exit(0)
