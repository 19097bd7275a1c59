import csv
import subprocess
import sys

import numpy as np

from conftest import ROOT, run_vj, tone


def test_help_describes_every_command():
    result = run_vj("--help")
    assert result.returncode == 0
    for command in ("check", "analyze", "render", "bench"):
        assert command in result.stdout
        sub = run_vj(command, "--help")
        assert sub.returncode == 0 and "usage: vj " + command in sub.stdout


def test_check_prints_every_error_and_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes: 'a:'\nwidht: 3\n")
    result = run_vj("check", bad, ROOT / "presets" / "demo.yaml")
    assert result.returncode == 1
    assert f"{bad}:1: scenes:" in result.stderr and f"{bad}:2: widht:" in result.stderr
    assert "demo.yaml: ok: 2 scenes" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_names_the_image_model_of_pixel_presets():
    result = run_vj("check", ROOT / "presets" / "palette.yaml", ROOT / "presets" / "demo.yaml")
    assert result.returncode == 0, result.stderr
    palette, _, demo = result.stdout.splitlines()
    assert palette.endswith(", image model limited_palette")
    assert demo.endswith(", diffusion model stabilityai/sd-turbo")


def test_analyze_writes_csv_and_plot(tmp_path, write_audio):
    sr = 48000
    signal = np.concatenate([tone(100, 1.0, sr), tone(900, 1.0, sr)])
    audio = write_audio(signal, sr)
    preset = ROOT / "presets" / "pytti_audio_example.yaml"
    out, png = tmp_path / "v.csv", tmp_path / "v.png"
    result = run_vj("analyze", audio, "--preset", preset, "--fps", 10, "-o", out, "--plot", png)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["frame", "t", "fLo", "fHi", "beat", "beat_phase", "bar_phase", "bpm", "beat_count"]
    assert len(rows) == 1 + 20
    values = np.array([[float(v) for v in r] for r in rows[1:]])
    assert values[9, 2] > 0.9 and values[9, 3] < 0.1  # 100 Hz tone: fLo high, fHi low
    assert values[19, 3] > 0.9 and values[19, 2] < 0.1  # 900 Hz tone: fHi high, fLo low
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_start_and_duration(tmp_path, write_audio):
    audio = write_audio(tone(100, 2.0))
    out = tmp_path / "v.csv"
    result = run_vj(
        "analyze",
        audio,
        "--preset",
        ROOT / "presets" / "pytti_audio_example.yaml",
        "--fps",
        10,
        "--start",
        0.5,
        "--duration",
        1,
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(out.open()))[1:]
    assert len(rows) == 10 and rows[0][:2] == ["5", "0.500000"]


def test_analyze_missing_audio_is_one_clear_line(tmp_path):
    result = run_vj(
        "analyze", tmp_path / "nope.wav", "--preset", ROOT / "presets" / "demo.yaml", "-o", tmp_path / "x.csv"
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.wav' not found" in result.stderr


def test_the_vj_process_ends_cleanly_while_a_thread_of_ours_is_inside_torch():
    # Without the guarded exit Python's shutdown unwinds the busy thread inside torch's C++: status 134, "terminate
    # called without an active exception" (as `vj live` did now and then when its last frame ran late).
    script = """
import threading, torch, vj.cli
a = torch.randn(400, 400)
busy = threading.Event()
def work():
    while True:
        busy.set()
        (a @ a).sum()
def main():
    threading.Thread(target=work, name="vj-engine", daemon=True).start()
    busy.wait()
    print("done")
    return 3
vj.cli.main, vj.cli.THREAD_GRACE = main, 0.2
vj.cli.run()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (3, "done\n", "")
