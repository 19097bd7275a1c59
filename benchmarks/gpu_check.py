"""One prepared check for a machine with one NVIDIA GPU: CUDA smoke tests of vj's commands, then the engine's
figures, printed as one JSON line. `benchmarks/gpu_check.sh` installs the carried wheels first and runs this.

    PYTHONPATH=. python3 benchmarks/gpu_check.py                      # arch:sd-turbo, float16, 512x512, cuda
    VJ_GPU_CHECK_DEVICE=cpu python3 benchmarks/gpu_check.py --model tiny --dtype float32 --size 64   # plumbing

Smoke steps (each a `vj` command in its own process, with its own time limit; a failing step never stops the
others): `vj render` of presets/demo.yaml (its track, a scene change), `vj live` headless (SDL's dummy video
driver, no audio input, --stats), `vj prerender` of a two-scene latent-blend preset, `vj render` of one
CLIP-guided frame (ViT-B-32 with random weights), `vj morph` to a PNG strip. Figures: `vj bench` with and
without `--compile` (the compiled one last, with whatever time is left: "skipped: over budget" when it does not
finish), `benchmarks/bench_transitions.py` (a 30-frame transition), `benchmarks/bench_guidance.py` (one guided
step), `benchmarks/bench_depth.py` (a depth map and the 3D warp), `benchmarks/bench_controlnet.py` (0, 1 and 2
ControlNets with the canny preprocessor on the moved previous frame) and `benchmarks/bench_preprocessors.py` (canny
against OpenCV, the depth map). Nothing is downloaded: `arch:sd-turbo`, its perceptor and its ControlNet (`arch:sd21`)
are built from packaged configs with random weights (the depth model from its config in vj/engine/depth/models.py),
and HF_HUB_OFFLINE is set for every step.

The JSON line also goes to $OUT/gpu_check.json (or --out), and every step's command and full output to
gpu_check.log beside it.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ("render", "live", "prerender", "guided", "morph")
FIGURES = (
    "bench",
    "bench_transitions",
    "bench_guidance",
    "bench_depth",
    "bench_controlnet",
    "bench_preprocessors",
    "bench_compile",
)
MIN_STEP_SECONDS = 15.0  # a step is not started with less time than this left in the budget
PROGRESS = re.compile(r"\d+%\||\d+/\d+ \[")  # tqdm's bars: not an error's last line

TRANSITION_PRESET = """\
scenes: a misty forest at dawn:1 || a neon city street at night:1
transition_mode: latent_blend
transition_quality: lowest
transition_steps: 2
width: {size}
height: {size}
seed: 7
"""

GUIDED_PRESET = """\
scenes: a forest at dawn:1 | a red balloon:0.5
perceptors: [ViT-B-32/openai]
cutouts: {cutouts}
clip_guidance_scale: 1
clip_guidance_steps: 1
frames_per_second: 4
width: {size}
height: {size}
seed: 7
"""


class Step:
    """One command to run: `name`, its argv, at most `limit` seconds, extra environment, and `check(result)`,
    which reads its outputs into figures (a dict) or raises ValueError with what is wrong."""

    def __init__(self, name, argv, limit, env=None, check=None, over_budget_is_skip=False):
        self.name, self.argv, self.limit = name, [str(a) for a in argv], limit
        self.env, self.check, self.over_budget_is_skip = env or {}, check, over_budget_is_skip


class Finished:
    """What a step's process did: returncode (None when killed at its limit), stdout, stderr, seconds."""

    def __init__(self, returncode, stdout, stderr, seconds):
        self.returncode, self.stdout, self.stderr, self.seconds = returncode, stdout, stderr, seconds


def last_line(*texts):
    """The last line worth reading of a failed step's output (stderr first): not blank, not a progress bar."""
    for text in texts:
        lines = [line.strip() for line in re.split(r"[\r\n]+", text or "")]
        lines = [line for line in lines if line and not PROGRESS.search(line)]
        if lines:
            return lines[-1][:300]
    return ""


def run_process(argv, limit, env=None, cwd=ROOT):
    """Run `argv` in its own process group for at most `limit` seconds (then the whole group is killed:
    inductor's compile workers too). A Finished, returncode None when killed."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=limit)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        code = None
    return Finished(code, out, err, time.monotonic() - started)


def json_from(text):
    """The JSON object a benchmark printed last (one line or indented), from its stdout."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = text.rfind("\n{")
    if start < 0:
        raise ValueError("no JSON in its output")
    return json.loads(text[start + 1 :])


class Runner:
    """Runs steps inside one time budget and keeps a record of each; writes their full output to `log` (a file
    object, or None). `run` may be called from several threads at once (`run_all`'s jobs)."""

    def __init__(self, budget, log=None, env=None, clock=time.monotonic, min_seconds=MIN_STEP_SECONDS):
        self.clock = clock
        self.min_seconds = min_seconds
        self.deadline = clock() + budget
        self.log = log
        self.env = dict(os.environ if env is None else env)
        self.records = {}
        self._lock = threading.Lock()

    def left(self):
        return self.deadline - self.clock()

    def _log(self, text):
        if self.log is not None:
            with self._lock:
                self.log.write(text)
                self.log.flush()

    def run_all(self, steps, jobs=1, report=None):
        """Run `steps`, `jobs` at a time (their order kept for starting), calling `report(step, record)` as each
        ends; the records by name."""

        def one(step):
            record = self.run(step)
            if report is not None:
                report(step, record)
            return record

        if jobs <= 1:
            for step in steps:
                one(step)
        else:
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(one, steps))
        return {step.name: self.records[step.name] for step in steps}

    def run(self, step):
        """Run `step` (or skip it when the budget is spent); its record: status ('passed', 'failed',
        'timed out' or 'skipped: over budget'), ok, seconds, the error's last line, and the check's figures."""
        limit = min(step.limit, self.left())
        if limit < self.min_seconds:
            record = {
                "ok": False,
                "status": "skipped: over budget",
                "seconds": 0.0,
                "error": f"{max(0.0, self.left()):.0f} s of the budget left",
            }
            self._log(f"\n=== {step.name}: skipped, {max(0.0, self.left()):.0f} s of the budget left\n")
            with self._lock:
                self.records[step.name] = record
            return record
        env = {**self.env, **step.env}
        done = run_process(step.argv, limit, env)
        self._log(
            f"\n=== {step.name} (limit {limit:.0f} s): {' '.join(step.argv)}\n--- stdout\n{done.stdout}\n"
            f"--- stderr\n{done.stderr}\n--- {step.name}: returncode {done.returncode}, {done.seconds:.1f} s\n"
        )
        record = {"ok": False, "seconds": round(done.seconds, 1)}
        if done.returncode is None:
            over = step.over_budget_is_skip and limit < step.limit
            record["status"] = "skipped: over budget" if over else "timed out"
            record["error"] = f"killed after {limit:.0f} s" + (
                f": {last_line(done.stderr, done.stdout)}" if not over else " (the budget left)"
            )
        elif done.returncode != 0:
            record["status"] = "failed"
            record["error"] = f"exit {done.returncode}: {last_line(done.stderr, done.stdout)}"
        else:
            try:
                figures = step.check(done) if step.check else {}
                record.update(ok=True, status="passed", **(figures or {}))
            except Exception as exc:  # the check's own reading of the outputs
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:300])
        with self._lock:
            self.records[step.name] = record
        return record


# -- what each step's outputs say ------------------------------------------------------------------------------
def _wrote(path):
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise ValueError(f"{path.name} was not written")
    return path.stat().st_size


def check_render(output):
    def check(done):
        size = _wrote(output)
        said = re.search(r"wrote (\d+) frames .*\(([\d.]+) frames/s", done.stderr)
        if not said:
            raise ValueError("no 'wrote N frames' line")
        return {"frames": int(said.group(1)), "frames_per_s": float(said.group(2)), "bytes": size}

    return check


def check_live(stats):
    def check(done):
        lines = Path(stats).read_text().splitlines() if Path(stats).is_file() else []
        records = [json.loads(line) for line in lines if line.strip()]
        if not records:
            raise ValueError("no --stats records")
        last = records[-1]
        best = max(r.get("engine_fps", 0) for r in records)
        # latency_ms is set by the first engine frame put on screen; engine_fps counts the last second only
        shown = [r for r in records if r.get("latency_ms", 0) > 0 or r.get("engine_fps", 0) > 0]
        if not shown:
            raise ValueError(f"no engine frame shown in {len(records)} stats records ({records[-1].get('t')} s)")
        if last.get("engine_errors"):
            raise ValueError(f"{last['engine_errors']} engine errors")
        display = next((line.strip() for line in done.stdout.splitlines() if line.strip().startswith("display:")), "")
        return {
            "stats_records": len(records),
            "first_frame_by_s": shown[0].get("t"),
            "engine_fps": round(best, 2),
            "display_fps": round(last.get("display_fps", 0), 2),
            "latency_ms": last.get("latency_ms"),
            "dropped_frames": last.get("dropped_frames"),
            "display": display[len("display:") :].strip(),
        }

    return check


def check_prerender(done):
    said = re.search(r"(\d+) transitions: (\d+) computed.* in ([\d.]+) s", done.stdout)
    if not said or int(said.group(2)) == 0:
        raise ValueError("no transition computed")
    return {"transitions": int(said.group(2)), "compute_s": float(said.group(3))}


def check_morph(output):
    def check(done):
        return {"bytes": _wrote(output)}

    return check


def check_bench(done):
    result = json_from(done.stdout)
    return {
        "fps": round(result["fps"], 2),
        "frame_ms": round(result["frame_ms"], 2),
        "stage_ms": {k: round(v, 2) for k, v in result["stage_ms"].items()},
        "bare_unet_vae_ms": round(result["bare_unet_vae_ms"], 2),
        "overhead_ratio": round(result["overhead_ratio"], 3),
        "vae": result["vae"],
        "frames": result["frames"],
        "dtype": result["dtype"],
        "compiled": result["compiled"],
    }


def check_bench_transitions(done):
    result = json_from(done.stdout)
    return {
        key: result[key]
        for key in ("quality", "frames", "compute_s", "smoothness_max_over_mean", "trigger_to_first_frame_ms")
    }


def check_bench_guidance(done):
    result = json_from(done.stdout)
    return {key: result[key] for key in ("cutouts", "perceptor_input", "plain_fps", "guided_fps", "guided_step_ms")}


def check_bench_depth(done):
    result = json_from(done.stdout)
    figures = {key: result[key] for key in ("model", "dtype", "parameters_m")}
    for key, record in result.items():
        if key.startswith("input_"):
            figures[key] = {name: value["median_ms"] for name, value in record.items() if name != "model_input"}
    if "warp" in result:  # why the 3D warp was not measured
        figures["warp"] = result["warp"]
    return figures


def check_bench_controlnet(done):
    result = json_from(done.stdout)
    figures = {key: result[key] for key in ("controlnet", "preprocessor", "size", "steps")}
    figures["nets"] = {
        str(r["nets"]): {"frame_ms": round(r["frame_ms"], 2), "ratio": r["ratio"] and round(r["ratio"], 3)}
        for r in result["results"]
    }
    return figures


def check_bench_preprocessors(done):
    result = json_from(done.stdout)
    return {
        str(row["size"]): {key: row[key]["median_ms"] for key in ("canny", "cv2_roundtrip", "depth_map") if key in row}
        for row in result["results"]
    }


# -- the plan --------------------------------------------------------------------------------------------------
def steps(args, work):
    """Every step, in the order they run: the smoke tests, then the figures, the compiled engine last."""
    python = sys.executable
    vj = [python, "-m", "vj"]
    size = str(args.size)
    engine = ["--model", args.model, "--device", args.device, "--dtype", args.dtype]
    sized = ["--width", size, "--height", size]
    transition = work / "transition.yaml"
    transition.write_text(TRANSITION_PRESET.format(size=args.size))
    guided = work / "guided.yaml"
    guided.write_text(GUIDED_PRESET.format(size=args.size, cutouts=args.smoke_cutouts))
    render_out, guided_out, morph_out, stats = (
        work / "render.mp4",
        work / "guided.mp4",
        work / "morph.png",
        work / "live.jsonl",
    )
    limit = args.step_limit
    headless = {"SDL_VIDEODRIVER": args.sdl_driver, "SDL_AUDIODRIVER": "dummy"}
    bench = [*vj, "bench", *engine, "--vae", "taesd", *sized, "--frames", args.bench_frames, "--json"]
    return [
        Step(
            "render",
            [
                *vj,
                "render",
                ROOT / "presets" / "demo.yaml",
                "-o",
                render_out,
                *engine,
                *sized,
                "--start",
                "3",
                "--duration",
                args.render_seconds,
                "--fps",
                "6",
                "--overwrite",
            ],
            limit,
            check=check_render(render_out),
        ),
        Step(
            "live",
            [
                *vj,
                "live",
                ROOT / "presets" / "live.yaml",
                *engine,
                *sized,
                "--windowed",
                "--audio-device",
                "none",
                "--osc",
                "off",
                "--duration",
                args.live_seconds,
                "--stats",
                stats,
            ],
            limit,
            env=headless,
            check=check_live(stats),
        ),
        Step("prerender", [*vj, "prerender", transition, *engine], limit, check=check_prerender),
        Step(
            "guided",
            [*vj, "render", guided, "-o", guided_out, *engine, "--duration", "0.25", "--overwrite"],
            limit,
            check=check_render(guided_out),
        ),
        Step(
            "morph",
            [
                *vj,
                "morph",
                transition,
                "--from",
                "forest",
                "--to",
                "city",
                "--steps",
                "3",
                "-o",
                morph_out,
                "--overwrite",
                *engine,
            ],
            limit,
            check=check_morph(morph_out),
        ),
        Step("bench", bench, limit, check=check_bench),
        Step(
            "bench_transitions",
            [
                python,
                ROOT / "benchmarks" / "bench_transitions.py",
                "--model",
                args.model,
                "--device",
                args.device,
                "--size",
                size,
                "--quality",
                "medium",
                "--frames",
                args.transition_frames,
            ],
            limit,
            check=check_bench_transitions,
        ),
        Step(
            "bench_guidance",
            [
                python,
                ROOT / "benchmarks" / "bench_guidance.py",
                "--model",
                args.model,
                "--device",
                args.device,
                "--size",
                size,
                "--cutouts",
                args.cutouts,
                "--frames",
                args.guidance_frames,
            ],
            limit,
            check=check_bench_guidance,
        ),
        Step(
            "bench_depth",
            [
                python,
                ROOT / "benchmarks" / "bench_depth.py",
                "--model",
                "tiny" if args.model == "tiny" else "arch:depth-anything-small",
                "--device",
                args.device,
                "--dtype",
                args.dtype,
                "--size",
                size,
                "--input-sizes",
                "56,28" if args.model == "tiny" else "518,266",
                "--frames",
                args.depth_frames,
                "--grad",
            ],
            limit,
            check=check_bench_depth,
        ),
        Step(
            "bench_controlnet",
            [
                python,
                ROOT / "benchmarks" / "bench_controlnet.py",
                *engine,
                *sized,
                "--preprocessor",
                "canny",
                "--frames",
                args.controlnet_frames,
                "--json",
            ],
            limit,
            check=check_bench_controlnet,
        ),
        Step(
            "bench_preprocessors",
            [
                python,
                ROOT / "benchmarks" / "bench_preprocessors.py",
                "--device",
                args.device,
                "--dtype",
                args.dtype,
                "--frames",
                args.preprocessor_frames,
            ],
            limit,
            check=check_bench_preprocessors,
        ),
        Step("bench_compile", [*bench, "--compile"], args.compile_limit, check=check_bench, over_budget_is_skip=True),
    ]


def machine(device):
    """The GPU (or CPU), torch and the packages vj imports, as versions."""
    import importlib.metadata

    import torch

    info = {
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            )
            info["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
    else:
        info["cpu"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
    versions = {}
    for name in (
        "diffusers",
        "transformers",
        "huggingface_hub",
        "open_clip_torch",
        "numba",
        "numpy",
        "pygame",
        "av",
        "soundfile",
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    info["packages"] = versions
    return info


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        default=os.environ.get("VJ_GPU_CHECK_DEVICE", "cuda"),
        choices=["cuda", "cpu"],
        help="cuda (default; $VJ_GPU_CHECK_DEVICE=cpu tries the plumbing on a CPU)",
    )
    p.add_argument("--model", default="arch:sd-turbo", help="arch:sd-turbo (random weights) or tiny")
    p.add_argument("--dtype", default="float16")
    p.add_argument("--size", type=int, default=512, help="frame width and height")
    p.add_argument(
        "--budget",
        type=float,
        default=400.0,
        help="seconds for all steps together (default 400: with the wheels' install, under 8 minutes)",
    )
    p.add_argument("--step-limit", type=float, default=120.0, help="seconds each step may take at most")
    p.add_argument(
        "--compile-limit",
        type=float,
        default=600.0,
        help="seconds for `vj bench --compile` (it runs last and gets at most what the budget has left)",
    )
    p.add_argument("--render-seconds", default="2", help="seconds of presets/demo.yaml to render at 6 fps")
    p.add_argument("--live-seconds", default="15", help="seconds of the headless live show")
    p.add_argument("--bench-frames", default="100", help="vj bench --frames")
    p.add_argument("--transition-frames", default="30", help="bench_transitions.py --frames")
    p.add_argument("--guidance-frames", default="10", help="bench_guidance.py --frames")
    p.add_argument("--cutouts", default="32", help="bench_guidance.py --cutouts")
    p.add_argument("--depth-frames", default="30", help="bench_depth.py --frames")
    p.add_argument("--controlnet-frames", default="30", help="bench_controlnet.py --frames")
    p.add_argument("--preprocessor-frames", default="100", help="bench_preprocessors.py --frames")
    p.add_argument("--smoke-cutouts", type=int, default=16, help="cutouts of the guided render")
    p.add_argument(
        "--jobs",
        type=int,
        help="smoke steps run at once (default 3 on cuda, 1 on cpu); the figures always run one at a time",
    )
    p.add_argument("--sdl-driver", default="dummy", help="SDL_VIDEODRIVER of the live show (dummy or offscreen)")
    p.add_argument("--only", help="comma-separated step names to run (default all): " + ",".join(SMOKE + FIGURES))
    p.add_argument(
        "--out",
        default=os.environ.get("OUT"),
        help="folder for gpu_check.json and gpu_check.log (default $OUT; none: only the JSON line)",
    )
    p.add_argument("--work", help="folder for the steps' files (default: a new temporary folder)")
    return p.parse_args(argv)


def assemble(info, records, seconds, settings):
    """The one JSON object: the machine, the settings, each smoke step, each figure, and `ok` (every smoke step
    passed and every figure passed or was skipped for the budget)."""
    smoke = {name: records[name] for name in SMOKE if name in records}
    figures = {name: records[name] for name in FIGURES if name in records}
    ok = all(r["ok"] for r in smoke.values()) and all(
        r["ok"] or r["status"] == "skipped: over budget" for r in figures.values()
    )
    return {
        "check": "vj gpu_check",
        "ok": ok,
        **info,
        **settings,
        "seconds": round(seconds, 1),
        "smoke": smoke,
        "figures": figures,
    }


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    try:
        import torch
    except ImportError as exc:
        print(f"gpu_check: torch cannot be imported ({exc}); nothing was run", file=sys.stderr)
        return 3
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu_check: torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False); "
            "nothing was run (VJ_GPU_CHECK_DEVICE=cpu tries the plumbing on a CPU)",
            file=sys.stderr,
        )
        return 3
    names = SMOKE + FIGURES
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            print(f"gpu_check: unknown step(s) {', '.join(unknown)}; steps: {', '.join(names)}", file=sys.stderr)
            return 2
        names = tuple(wanted)
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vj-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    # Nothing is downloaded: the hub is off, and caches (transitions) go to the work folder.
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        XDG_CACHE_HOME=str(work / "cache"),
        PYTHONUNBUFFERED="1",
        PYGAME_HIDE_SUPPORT_PROMPT="1",
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    info = machine(args.device)
    log = open(out / "gpu_check.log", "a") if out is not None else None
    try:
        if log is not None:
            log.write(f"vj gpu_check: {json.dumps(info)}\nwork folder: {work}\n")
        runner = Runner(args.budget, log, env)

        def report(step, record):
            print(
                f"gpu_check: {step.name}: {record['status']} in {record['seconds']:.1f} s"
                + (f": {record['error']}" if not record["ok"] else ""),
                file=sys.stderr,
                flush=True,
            )

        planned = [step for step in steps(args, work) if step.name in names]
        jobs = args.jobs or (3 if args.device == "cuda" else 1)
        runner.run_all([s for s in planned if s.name in SMOKE], jobs, report)  # side by side: no figure among them
        runner.run_all([s for s in planned if s.name in FIGURES], 1, report)
        settings = {"model": args.model, "dtype": args.dtype, "size": args.size, "budget_s": args.budget}
        result = assemble(info, runner.records, time.monotonic() - started, settings)
        line = json.dumps(result, separators=(", ", ": "))
        if log is not None:
            log.write(f"\n{line}\n")
    finally:
        if log is not None:
            log.close()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if out is not None:
        (out / "gpu_check.json").write_text(line + "\n")
    print(line, flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
