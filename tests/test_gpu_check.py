"""benchmarks/gpu_check.sh and its helper: the step runner (limits, failures, the budget), the one JSON line, and
the whole script end to end on a CPU (tiny model, one step)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_check import Runner, Step  # noqa: E402

PY = sys.executable


def python(code):
    return [PY, "-c", code]


def test_each_step_is_recorded_and_a_failing_or_hanging_step_does_not_stop_the_others(tmp_path):
    log = open(tmp_path / "log", "w")
    runner = Runner(60, log, min_seconds=0)
    steps = [
        Step("good", python("print('{\"fps\": 12.5}')"), 30, check=lambda done: gpu_check.json_from(done.stdout)),
        Step(
            "bad",
            python(
                "import sys; print('render:  50%|###  | 3/6 [00:01<00:01]', file=sys.stderr); "
                "sys.exit('vj render: error: out of GPU memory')"
            ),
            30,
        ),
        # a hanging step and the process it started: the whole group is killed at the limit
        Step(
            "hangs",
            python(
                "import subprocess, sys, time; "
                "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                "print('still working', flush=True); time.sleep(60)"
            ),
            1,
        ),
        Step("unreadable", python("print('no figures here')"), 30, check=lambda done: gpu_check.json_from(done.stdout)),
    ]
    started = time.monotonic()
    records = runner.run_all(steps, jobs=2)
    log.close()
    assert time.monotonic() - started < 20
    assert list(records) == ["good", "bad", "hangs", "unreadable"]
    assert records["good"]["ok"] and records["good"]["status"] == "passed" and records["good"]["fps"] == 12.5
    assert records["bad"] == {
        "ok": False,
        "status": "failed",
        "seconds": records["bad"]["seconds"],
        "error": "exit 1: vj render: error: out of GPU memory",
    }
    assert records["hangs"]["status"] == "timed out" and not records["hangs"]["ok"]
    assert records["hangs"]["error"] == "killed after 1 s: still working"
    assert records["unreadable"]["status"] == "failed" and "no JSON" in records["unreadable"]["error"]
    text = (tmp_path / "log").read_text()
    assert all(f"=== {name} (limit" in text for name in records) and "out of GPU memory" in text


def test_the_budget_skips_steps_and_cuts_the_last_one_short():
    runner = Runner(0, min_seconds=5)
    assert runner.run(Step("late", python("pass"), 30))["status"] == "skipped: over budget"
    runner = Runner(1, min_seconds=0)
    record = runner.run(Step("bench_compile", python("import time; time.sleep(30)"), 600, over_budget_is_skip=True))
    assert record["status"] == "skipped: over budget" and not record["ok"]


def test_the_json_line_is_ok_when_every_smoke_step_passed_and_no_figure_failed():
    passed = {"ok": True, "status": "passed", "seconds": 1.0}
    skipped = {"ok": False, "status": "skipped: over budget", "seconds": 0.0}
    records = {name: passed for name in gpu_check.SMOKE + gpu_check.FIGURES}
    result = gpu_check.assemble({"device": "cuda", "gpu": "X"}, {**records, "bench_compile": skipped}, 3.0, {})
    assert result["ok"] and list(result["smoke"]) == list(gpu_check.SMOKE)
    assert list(result["figures"]) == list(gpu_check.FIGURES) and result["gpu"] == "X"
    assert not gpu_check.assemble({}, {**records, "bench": {**passed, "ok": False, "status": "failed"}}, 3.0, {})["ok"]
    assert not gpu_check.assemble({}, {**records, "live": skipped}, 3.0, {})["ok"]


def test_json_from_reads_the_last_object_printed():
    assert gpu_check.json_from('{"a": 1}\n') == {"a": 1}
    assert gpu_check.json_from('warming up\n{\n  "a": 1,\n  "b": [2]\n}\n') == {"a": 1, "b": [2]}
    with pytest.raises(ValueError):
        gpu_check.json_from("no json")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA GPU is here")
def test_without_a_gpu_it_says_so_in_one_line():
    run = subprocess.run(
        [PY, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3 and run.stdout == ""
    assert len(run.stderr.splitlines()) == 1 and "sees no CUDA GPU" in run.stderr


def test_the_script_end_to_end_on_a_cpu(tmp_path):
    env = dict(os.environ, VJ_GPU_CHECK_DEVICE="cpu", VJ_GPU_CHECK_WHEELS="none", PYTHON=PY, OUT=str(tmp_path))
    run = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu_check.sh"),
            "--model",
            "tiny",
            "--dtype",
            "float32",
            "--size",
            "64",
            "--only",
            "morph",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {
        "check",
        "ok",
        "device",
        "python",
        "torch",
        "packages",
        "model",
        "dtype",
        "size",
        "seconds",
        "smoke",
        "figures",
    } <= set(result)
    assert result["ok"] and result["device"] == "cpu" and result["model"] == "tiny" and result["figures"] == {}
    assert result["smoke"]["morph"]["status"] == "passed" and result["smoke"]["morph"]["bytes"] > 0
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == result
    assert "=== morph (limit" in (tmp_path / "gpu_check.log").read_text()
    assert "gpu_check: morph: passed" in run.stderr
