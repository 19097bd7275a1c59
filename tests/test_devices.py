"""Where the engine runs (vj/engine/devices.py): --device auto|cpu|cuda|cuda:N|mps with CUDA's and MPS's availability
patched, the default dtype per device, the one-line error for a device that is not here, and that the engine makes
every tensor on its components' device (no code path assumes the CPU, nor CUDA)."""

import dataclasses
import functools
import linecache
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from conftest import ROOT, run_vj, tiny_autoencoder_kl
from vj.engine import devices
from vj.engine.devices import default_dtype, pick_device, resolve_dtype
from vj.engine.errors import DeviceUnavailable, EngineError, ModelError
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest, GuideEmbedding, StageTimer
from vj.engine.guidance.objective import CutoutSettings, GuidanceRequest, Objective, Target
from vj.engine.diffusion.models import load_components
from vj.engine.motion import Motion, warp
from vj.engine.guidance.perceptors import tiny_perceptor
from vj.engine.pixels.engine import PixelEngine, PixelSettings
from vj.engine.transitions.plans import Crossfeed, TreePlan
from vj.engine.transitions.latent_blend import Trajectories, blend_tree
from vj.cli import build_parser


@pytest.fixture
def machine(monkeypatch):
    """machine(cuda=N GPUs, mps=bool): torch's CUDA and MPS availability checks patched to say so."""

    def says(value):  # cached like torch's own checks (torch._dynamo reads their __wrapped__)
        return functools.lru_cache()(lambda: value)

    def patch(cuda=0, mps=False, mps_built=None):
        monkeypatch.setattr(torch.cuda, "is_available", says(cuda > 0))
        monkeypatch.setattr(torch.cuda, "device_count", says(cuda))
        monkeypatch.setattr(torch.backends.mps, "is_available", says(mps))
        monkeypatch.setattr(torch.backends.mps, "is_built", says(mps if mps_built is None else mps_built))

    return patch


@pytest.mark.parametrize(
    "cuda, mps, picked", [(1, True, "cuda"), (2, False, "cuda"), (0, True, "mps"), (0, False, "cpu")]
)
def test_auto_picks_cuda_then_mps_then_the_cpu(machine, cuda, mps, picked):
    machine(cuda=cuda, mps=mps)
    assert pick_device("auto") == torch.device(picked)
    assert pick_device() == torch.device(picked)
    assert devices.available_devices()[0] == (picked if cuda < 2 else "cuda:0")


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:1", "mps"])
def test_a_device_that_is_here_is_taken_as_named(machine, name):
    machine(cuda=2, mps=True)
    assert pick_device(name) == torch.device(name)
    assert pick_device(torch.device(name)) == torch.device(name)


def test_the_cpu_is_always_here(machine):
    machine(cuda=0, mps=False)
    assert pick_device("cpu") == torch.device("cpu")
    assert devices.available_devices() == ["cpu"]


def test_vj_devices_lists_the_engine_devices_best_first(machine, monkeypatch):
    from types import SimpleNamespace

    from vj.commands import devices as command

    machine(cuda=2, mps=False)
    cards = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA L4"}
    memory = {0: 80 * 2**30, 1: 24 * 2**30}
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda d: SimpleNamespace(name=cards[d.index], total_memory=memory[d.index]),
    )
    lines = command._engine()
    assert lines[:3] == [
        "engine devices (--device; auto picks cuda:0):",
        "  cuda:0: NVIDIA H100 80GB HBM3, 80 GiB",
        "  cuda:1: NVIDIA L4, 24 GiB",
    ]
    assert lines[3].startswith("  cpu: ") and len(lines) == 4
    machine(cuda=0, mps=True)
    assert command._engine()[:2] == [
        "engine devices (--device; auto picks mps):",
        "  mps: Apple GPU (Metal), memory shared with the CPU",
    ]


@pytest.mark.parametrize(
    "cuda, mps, mps_built, name, message",
    [
        (
            0,
            False,
            False,
            "cuda",
            "--device cuda was asked for, but torch sees no CUDA GPU; available here: cpu (--device auto picks cpu)",
        ),
        (
            0,
            True,
            True,
            "cuda",
            "--device cuda was asked for, but torch sees no CUDA GPU; available here: mps, cpu "
            "(--device auto picks mps)",
        ),
        (
            0,
            False,
            True,
            "cuda:0",
            "--device cuda:0 was asked for, but torch sees no CUDA GPU; available here: cpu (--device auto picks cpu)",
        ),
        (
            1,
            False,
            False,
            "cuda:1",
            "--device cuda:1 was asked for, but torch sees 1 CUDA GPU (cuda:0); available "
            "here: cuda, cpu (--device auto picks cuda)",
        ),
        (
            2,
            False,
            False,
            "cuda:2",
            "--device cuda:2 was asked for, but torch sees 2 CUDA GPUs (cuda:0 to cuda:1); "
            "available here: cuda:0, cuda:1, cpu (--device auto picks cuda:0)",
        ),
        (
            1,
            False,
            False,
            "mps",
            "--device mps was asked for, but torch sees no Apple GPU (MPS): this torch build has no "
            "MPS support (it needs an arm64 macOS build); available here: cuda, cpu (--device auto "
            "picks cuda)",
        ),
        (
            0,
            False,
            True,
            "mps",
            "--device mps was asked for, but torch sees no Apple GPU (MPS): this machine is no Apple "
            "silicon Mac with macOS 12.3 or later; available here: cpu (--device auto picks cpu)",
        ),
    ],
)
def test_a_device_that_is_not_here_is_one_line_naming_those_that_are(machine, cuda, mps, mps_built, name, message):
    machine(cuda=cuda, mps=mps, mps_built=mps_built)
    with pytest.raises(DeviceUnavailable) as info:
        pick_device(name)
    assert str(info.value) == message
    assert isinstance(info.value, EngineError) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "mps:0", "metal", ""])
def test_an_unknown_device_name_is_refused(machine, name):
    machine(cuda=1, mps=True)
    assert not devices.is_device_name(name)
    with pytest.raises(DeviceUnavailable, match="unknown device .*use auto, cpu, cuda, cuda:N or mps"):
        pick_device(name)


def test_the_default_dtype_is_float16_on_cuda_and_float32_on_mps_and_the_cpu():
    assert default_dtype(torch.device("cuda")) == torch.float16
    assert default_dtype(torch.device("cuda:1")) == torch.float16
    assert default_dtype(torch.device("mps")) == torch.float32
    assert default_dtype(torch.device("cpu")) == torch.float32
    assert default_dtype("mps") == torch.float32
    for device in ("cuda", "mps", "cpu"):
        assert resolve_dtype("auto", torch.device(device)) == default_dtype(torch.device(device))
        assert resolve_dtype("float16", torch.device(device)) == torch.float16
        assert resolve_dtype("bfloat16", torch.device(device)) == torch.bfloat16
    with pytest.raises(ModelError, match="unknown dtype 'half'; use auto, float32, float16, bfloat16"):
        resolve_dtype("half", torch.device("cpu"))


def test_components_load_on_the_picked_device_in_its_default_dtype(machine):
    machine(cuda=0, mps=False)
    c = load_components("tiny")  # auto: the CPU here
    assert c.device == torch.device("cpu") and c.dtype == torch.float32
    assert {p.device for m in (c.unet, c.vae, c.text_encoder) for p in m.parameters()} == {torch.device("cpu")}
    with pytest.raises(DeviceUnavailable, match="--device mps was asked for"):
        load_components("tiny", device="mps")


@pytest.mark.parametrize("kind", ["cuda", "mps"])
def test_synchronize_and_host_copies_use_only_the_devices_own_calls(monkeypatch, kind):
    """CUDA's synchronize for CUDA, MPS's for MPS, none for the CPU; pinned memory (which needs CUDA) only for
    copies to a CUDA GPU."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", str(device))))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps",)))
    devices.synchronize(torch.device("cpu"))
    assert calls == []
    devices.synchronize(torch.device(kind))
    assert calls == [("cuda", "cuda")] if kind == "cuda" else [("mps",)]

    class Host(torch.Tensor):
        def pin_memory(self):
            calls.append("pin")
            return self

        def to(self, *args, **kwargs):
            calls.append(("to", str(args[0]), kwargs.get("non_blocking", False)))
            return self

    calls.clear()
    host = torch.zeros(2).as_subclass(Host)
    devices.to_device(host, torch.device(kind))
    assert calls == (["pin", ("to", "cuda", True)] if kind == "cuda" else [("to", "mps", False)])


def test_the_stage_timer_synchronizes_through_the_device_helper(monkeypatch):
    seen = []
    monkeypatch.setattr("vj.engine.diffusion.frames.synchronize", seen.append)
    timer = StageTimer(torch.device("mps"))
    with timer.stage("unet"):
        pass
    assert seen == [torch.device("mps")] * 2 and "unet" in timer.totals


def test_the_cli_takes_every_device_name_and_refuses_others(capsys):
    parser = build_parser()
    for command in (
        ["render", "p.yaml", "-o", "x.mp4"],
        ["live", "p.yaml"],
        ["prerender", "p.yaml"],
        ["morph", "p.yaml", "--from", "a", "--to", "b", "-o", "x.png"],
        ["bench"],
    ):
        for name in ("auto", "cpu", "cuda", "cuda:1", "mps"):
            assert parser.parse_args(command + ["--device", name]).device == name
        assert parser.parse_args(command).device == "auto" and parser.parse_args(command).dtype == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--device", "gpu"])
    assert (
        "argument --device: invalid choice: 'gpu' (choose from auto, cpu, cuda, cuda:N, mps)" in capsys.readouterr().err
    )


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_vj_bench_on_an_absent_apple_gpu_is_one_line():
    result = run_vj("bench", "--device", "mps", "--frames", "1", "--width", "64", "--height", "64")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("vj bench: error: --device mps was asked for, but torch sees no Apple GPU (MPS)")
    assert result.stderr.count("\n") == 1


# -- every tensor on the components' device -----------------------------------------------------------------------

OURS = tuple(str(ROOT / folder) + "/" for folder in ("engine", "vj"))
# Tensors made on the host on purpose, then copied over: the motion matrix (through pinned memory on CUDA), the
# two noising numbers read on the host before a frame's work is queued, and the pixel models' seeded start (drawn
# on the host so that it is the same on every device).
HOST_SITES = {
    ("vj/engine/motion.py", "affine_theta"),
    ("vj/engine/diffusion/sampler.py", "noise_scales"),
    ("vj/engine/pixels/models.py", "__init__"),
}


class FactoryRecorder(TorchFunctionMode):
    """Records each tensor factory (torch.zeros, randn, tensor, arange, ...) that this project's code calls:
    where, and on which device. One without `device=` makes its tensor on torch's default device, whatever the
    components' device is: on a GPU that is a CPU tensor in the middle of the frame."""

    def __init__(self, folders=OURS):
        super().__init__()
        self.folders = folders
        self.implicit, self.explicit = [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        passthrough = func in (torch.as_tensor, torch.asarray) and args and isinstance(args[0], torch.Tensor)
        if func in _device_constructors() and not passthrough:
            caller = sys._getframe(1)
            path = caller.f_code.co_filename
            if path.startswith(self.folders):
                site = (Path(path).relative_to(ROOT).as_posix(), caller.f_code.co_name, caller.f_lineno)
                if kwargs.get("device") is None:
                    self.implicit.append(site)
                else:
                    self.explicit.append((site, torch.device(kwargs["device"])))
        return func(*args, **kwargs)


def _render_everything(c, perceptor, picture, guide_embedding):
    """Frames of every path of the engines on components `c`: txt2img, img2img with motion, negative prompts, a
    crossfade, the init image, a guide pull, image conditioning, CLIP guidance with a mask, a latent-blend tree,
    and both pixel models (with a target palette). Returns the uint8 frames."""
    objective = Objective([perceptor], cutouts=CutoutSettings(count=4))
    guides = {
        "0": GuideEmbedding(guide_embedding, ("linear", "threshold", "clustered")),
        "1": GuideEmbedding(guide_embedding, ("concept",), (), "a fox"),
    }
    engine = FrameEngine(
        c, EngineSettings(width=64, height=64, steps=2), picture, objective=objective, guide_images=guides
    )
    guidance = GuidanceRequest(targets=(Target("text", "a red balloon", 1.0, mask="dir:l"),), steps=1)
    frames = []
    for i, infill in enumerate(["mirror", "wrap", "black"]):
        engine.settings = dataclasses.replace(engine.settings, infill_mode=infill)
        frames.append(
            engine.render(
                FrameRequest(
                    i,
                    (("a red fox", 1.0), ("rain", -0.5)),
                    strength=0.6,
                    seed=3,
                    motion=Motion(1.0, 2.0, 3.0, 4.0, 4.0),
                    previous_prompts=(("a cat", 1.0),),
                    mix=0.4,
                    init_weight=0.5,
                    guide=picture[:32, :32],
                    guide_weight=0.3,
                    guidance=guidance,
                    image_conditioning=(("0", 0.5), ("1", 0.5)),
                )
            )
        )
    a, b = (engine.conditioning(FrameRequest(0, ((text, 1.0),))) for text in ("a forest", "the sea"))
    paths = blend_tree(
        Trajectories(c, 64, 64),
        a,
        b,
        1,
        TreePlan(steps=2, branches=(2,), injections=(1,)),
        crossfeed=Crossfeed(0.5, 1.0, 0.5),
    )
    frames += [((p.image[0] / 2 + 0.5).clamp(0, 1) * 255).round().byte().cpu().numpy() for p in paths]
    for model in ("unlimited_palette", "limited_palette"):
        pixels = PixelEngine(
            PixelSettings(model=model, width=32, height=32, steps_per_frame=2),
            objective,
            picture,
            c.device,
            target_palette=picture if model == "limited_palette" else None,
        )
        for i in range(2):
            frames.append(
                pixels.render(
                    FrameRequest(
                        i,
                        (("a", 1.0),),
                        motion=Motion(1.0, 1.0, 1.0, 1.0, 1.0),
                        guidance=GuidanceRequest(targets=(Target("text", "x", 1.0),)),
                    )
                )
            )
    return frames


ENGINE_DEVICES = [
    pytest.param(name, marks=pytest.mark.skipif(not available, reason=f"no {name} here"))
    for name, available in (
        ("cpu", True),
        ("cuda", torch.cuda.is_available()),
        ("mps", torch.backends.mps.is_available()),
    )
]


@pytest.mark.parametrize("device", ENGINE_DEVICES)
@pytest.mark.parametrize("vae", ["taesd", "kl"])
def test_the_engines_make_every_tensor_on_the_components_device(device, vae):
    """Every tensor factory the engines' code calls while rendering names its device, and that device is the
    components' own except at the few deliberate host sites (HOST_SITES, which write "cpu" out). On the CPU the
    second half cannot tell "cpu" from the components' device: the first is what catches a tensor that would land
    on the CPU next to a GPU (run on CUDA or MPS, the second half checks the devices themselves)."""
    c = load_components("tiny", device=device)
    if vae == "kl":
        c = dataclasses.replace(c, vae=tiny_autoencoder_kl().to(c.device).eval().requires_grad_(False))
    perceptor = tiny_perceptor(c.device)
    picture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    guide_embedding = tiny_perceptor(c.device, embed_dim=c.text_encoder.config.hidden_size).encode_picture_tokens(
        picture
    )
    recorder = FactoryRecorder()
    with recorder:
        frames = _render_everything(c, perceptor, picture, guide_embedding)
    assert not recorder.implicit, f"tensors made without a device at {sorted(set(recorder.implicit))}"
    assert recorder.explicit  # the recorder saw the engines' factories
    elsewhere = {site for site, on in recorder.explicit if on != c.device and site[:2] not in HOST_SITES}
    assert not elsewhere, f"tensors made off the components' device ({c.device}) at {sorted(elsewhere)}"
    literal_cpu = {
        site[:2] for site, _ in recorder.explicit if '"cpu"' in linecache.getline(str(ROOT / site[0]), site[2])
    }
    assert literal_cpu <= HOST_SITES, f"host tensors outside HOST_SITES: {sorted(literal_cpu - HOST_SITES)}"
    assert len(frames) == 3 + 4 + 4 and all(frame.dtype == np.uint8 and frame.std() > 0 for frame in frames)


def test_the_recorder_catches_a_tensor_made_without_a_device(monkeypatch):
    """The check above would fail: a warp whose matrix is made on the default device is caught."""
    import vj.engine.motion as motion

    original = motion.affine_theta

    def careless(*args):
        return torch.zeros(1, 2, 3) + original(*args)  # no device: torch's default one

    monkeypatch.setattr(motion, "affine_theta", careless)
    image = torch.zeros(1, 3, 8, 8)
    recorder = FactoryRecorder(folders=(str(ROOT / "tests") + "/",))
    with recorder:
        warp(image, Motion(translate_x=1.0))
    assert [site[:2] for site in recorder.implicit] == [("tests/test_devices.py", "careless")]


def test_vj_devices_lists_cameras_and_ndi_sources(monkeypatch):
    from types import SimpleNamespace

    from vj.commands import devices as command
    from vj.video.frames import VideoError
    from vj.video.sources import cameras, ndi

    monkeypatch.setattr(cameras, "list_cameras", lambda: [SimpleNamespace(index=0, name="C920", device="/dev/video0")])
    monkeypatch.setattr(ndi, "list_ndi_sources", lambda wait: ["STUDIO (Resolume)"])
    assert command._video_inputs() == [
        "cameras (--video-in camera:N or camera:NAME):",
        "  0: 'C920' (/dev/video0)",
        "NDI sources (--video-in ndi:NAME):",
        "  'STUDIO (Resolume)'",
    ]

    def missing(wait):
        raise VideoError("ndi:NAME needs the NDI extra: pip install 'vj[ndi]'")

    monkeypatch.setattr(cameras, "list_cameras", lambda: [])
    monkeypatch.setattr(ndi, "list_ndi_sources", missing)
    assert command._video_inputs() == [
        "cameras: none",
        "NDI sources: ndi:NAME needs the NDI extra: pip install 'vj[ndi]'",
    ]
