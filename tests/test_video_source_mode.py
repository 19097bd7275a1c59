"""pytti's Video Source mode: its preset keys and their checks, the Director's video frame and weight per frame
(reencode_each_frame, cuts, video_weight), the diffusion engine's input (img2img of the video frame exactly as
diffusers computes it), pixel models that follow the video, and stabilization that targets the video frame.

The video sources here are small fakes with the VideoSource interface; the real ones are tested with them."""

import json

import jsonschema
import numpy as np
import pytest
import torch
import yaml

from conftest import problems, write
from video_codes import coded_frame, write_coded_video
from vj.config.loading import PresetError, load_preset
from vj.config.reference import json_schema
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest, fitted, image_to_tensor
from vj.engine.guidance.objective import CutoutSettings, GuidanceRequest, Objective, Target
from vj.engine.guidance.perceptors import tiny_perceptor
from vj.engine.pixels.engine import PixelEngine, PixelSettings
from vj.show.director import Director
from vj.video.cuts import CUT_THRESHOLD, frame_difference, is_cut
from vj.video.frames import VideoFrame
from test_engine import pipeline  # diffusers' pipelines on the same components

SIZE = 64
FPS = 8


def gradient(angle, phase=0.0, size=SIZE, colour=(1.0, 0.6, 0.3)):
    """uint8 size x size x 3: a smooth stripe pattern at `angle` radians, shifted by `phase`."""
    y, x = np.mgrid[0:size, 0:size] / size
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) * 1.5 + phase)
    rgb = np.stack([wave * c + (1 - c) * (1 - wave) for c in colour], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


class FakeVideo:
    """A VideoSource over a list of frames: output time t shows frame round(t * fps) (the last one holds)."""

    description = "fake video"
    warning = None

    def __init__(self, frames, fps=FPS, starts_at=0.0):
        self.frames, self.fps, self.starts_at = list(frames), fps, starts_at
        self.asked = []

    def frame_for(self, t):
        self.asked.append(t)
        if t < self.starts_at:
            return None  # a live stream not connected yet
        i = min(int(round(t * self.fps)), len(self.frames) - 1)
        return VideoFrame(self.frames[i], i, i / self.fps, 0.0)

    def stats(self):
        return {"decoded": len(self.frames), "used": len(self.asked), "errors": 0, "age_s": None}

    def close(self):
        pass


def video_preset(tmp_path, extra="", mode="Video Source"):
    return load_preset(
        write(
            tmp_path, f"scenes: a forest\nmodel: tiny\nwidth: {SIZE}\nheight: {SIZE}\nanimation_mode: {mode}\n{extra}"
        )
    )


# --- keys ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written, mode",
    [
        ("off", "off"),  # YAML 1.1 reads a bare off as false
        ("'off'", "off"),
        ("2D", "2D"),
        ("2d", "2D"),
        ("Video Source", "Video Source"),
        ("video source", "Video Source"),
        ("video_source", "Video Source"),
        ("VIDEO SOURCE", "Video Source"),
    ],
)
def test_animation_mode_takes_pyttis_spellings(tmp_path, written, mode):
    preset = load_preset(write(tmp_path, f"scenes: a\nanimation_mode: {written}\nvideo_path: udp://127.0.0.1:5000\n"))
    assert preset.animation_mode == mode


def test_defaults_are_pyttis_and_vjs(tmp_path):
    preset = load_preset(write(tmp_path, "scenes: a\n"))
    assert (preset.animation_mode, preset.video_path, preset.frame_stride) == ("off", "", 1)
    assert preset.reencode_each_frame is True and preset.video_loop is False
    assert preset.video_weight(None) == 0.5 and preset.video_problem is None
    assert list(preset.area("video")) == [
        "animation_mode",
        "video_path",
        "frame_stride",
        "reencode_each_frame",
        "video_weight",
        "video_loop",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("animation_mode: vidoe source\n", "p.yaml:2: animation_mode: must be one of off, 2D, 3D, Video Source"),
        ("animation_mode: Video Source\nvideo_path: ftp://host/clip.mp4\n", "p.yaml:3: video_path: unknown scheme"),
        ("animation_mode: Video Source\nvideo_path: clip.mp4\nframe_stride: 0\n", "p.yaml:4: frame_stride: must be"),
        ("video_path: clip.mp4\nframe_stride: 1.5\n", "p.yaml:3: frame_stride: expected an integer"),
        ("animation_mode: Video Source\nvideo_path: nowhere.mp4\n", "p.yaml:3: video_path: video file 'nowhere.mp4'"),
        ("animation_mode: Video Source\nvideo_path: noise.mp4\n", "p.yaml:3: video_path: cannot decode the video"),
        ("animation_mode: Video Source\nvideo_path: camera:0\n", "p.yaml:3: video_path: 'camera:0' is a live input"),
        ("video_weight: 1.5\n", "p.yaml:2: video_weight: 1.5 is outside the video_weight range 0..1"),
        ("video_weight: fHi\n", "p.yaml:2: video_weight: "),
        ("reencode_each_frame: maybe\n", "p.yaml:2: reencode_each_frame: expected true or false"),
    ],
)
def test_bad_video_keys_are_refused_with_file_key_and_line(tmp_path, text, message):
    write_coded_video(tmp_path / "clip.mp4", 3, width=64, height=64)
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    found = problems(write(tmp_path, "scenes: a\n" + text))
    assert any(message in p for p in found), found
    assert len(found) == 1 and "\n" not in found[0]


def test_a_good_file_and_stream_urls_load(tmp_path):
    write_coded_video(tmp_path / "clip.mp4", 3, width=64, height=64)
    preset = video_preset(tmp_path, "video_path: clip.mp4\nframe_stride: 2\nreencode_each_frame: false\n")
    assert preset.video_path == "clip.mp4" and preset.frame_stride == 2 and preset.warnings == ()
    for url in ("udp://127.0.0.1:5000", "srt://127.0.0.1:9000?mode=caller", "RTSP://cam.local/stream"):
        assert video_preset(tmp_path, f"video_path: '{url}'\n").video_path == url


def test_the_schema_takes_the_video_keys_as_vj_does(tmp_path):
    validator = jsonschema.Draft7Validator(json_schema())
    good = "scenes: a\nanimation_mode: off\nvideo_path: clip.mp4\nframe_stride: 3\nvideo_weight: 0.2*fLo\n"
    assert list(validator.iter_errors(yaml.safe_load(good))) == []
    assert list(validator.iter_errors(yaml.safe_load("scenes: a\nanimation_mode: Video Source\n"))) == []
    for bad in ("animation_mode: 4D", "frame_stride: 0", "video_loop: 1"):
        assert list(validator.iter_errors(yaml.safe_load(f"scenes: a\n{bad}\n"))), bad
    assert "Video Source" in json.dumps(json_schema()["properties"]["animation_mode"])


def test_video_source_without_a_video_is_checked_honestly_and_refused_when_shown(tmp_path):
    """`vj check` cannot know whether `vj live --video-in` will give the video: the preset loads with a warning, and
    a Director made without a video source (a render, or a live show without --video-in) refuses it."""
    preset = video_preset(tmp_path)
    assert any("Video Source needs video_path" in w for w in preset.warnings)
    with pytest.raises(PresetError) as info:
        Director(preset)
    assert info.value.problems == [
        f"{tmp_path / 'p.yaml'}:5: animation_mode: Video Source needs video_path (a video file or a stream URL), "
        "or `vj live --video-in SOURCE`"
    ]
    Director(preset, video=FakeVideo([gradient(0)]))  # --video-in
    off = load_preset(write(tmp_path, "scenes: a\nvideo_path: udp://127.0.0.1:5000\n"))
    assert any("video_path has no effect with animation_mode off" in w for w in off.warnings)


# --- cuts ---------------------------------------------------------------------------------------------------


def test_cuts_are_new_shots_not_motion():
    a, b = gradient(0.0), gradient(2.0, colour=(0.2, 0.9, 0.5))
    assert not is_cut(None, a) and not is_cut(a, a)
    assert not is_cut(a, gradient(0.0, phase=0.3))  # the picture moved a little
    assert not is_cut(coded_frame(7), coded_frame(8))  # a few blocks change
    assert is_cut(a, b) and frame_difference(a, b) > CUT_THRESHOLD
    assert is_cut(a, np.ascontiguousarray(b[::2, ::2]))  # frames of other sizes compare too
    assert frame_difference(a, np.repeat(np.repeat(a, 2, 0), 2, 1)) < 1e-6
    assert frame_difference(np.zeros((3, 5, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)) == 1.0


# --- the Director -------------------------------------------------------------------------------------------


def requests(director, count, inputs=None):
    return [director.request(i, i / FPS, inputs or {}) for i in range(count)]


def test_director_with_reencode_gives_each_frame_its_video_frame_at_weight_1(tmp_path):
    frames = [gradient(0.0, phase=0.2 * i) for i in range(6)]
    video = FakeVideo(frames)
    made = requests(Director(video_preset(tmp_path, "video_weight: 0.1\n"), video=video), 6)
    assert video.asked == [i / FPS for i in range(6)]
    for i, r in enumerate(made):
        assert r.video is frames[i] and r.video_weight == 1.0 and r.video_stabilization
        assert r.video_cut == (i == 0)  # the video's first frame starts a shot


def test_director_weights_follow_video_weight_and_cuts_force_1(tmp_path):
    shot_a = [gradient(0.0, phase=0.1 * i) for i in range(3)]
    shot_b = [gradient(2.0, phase=0.1 * i, colour=(0.1, 0.9, 0.6)) for i in range(3)]
    preset = video_preset(
        tmp_path,
        "reencode_each_frame: false\nvideo_weight: 0.2 + knob\ncontrols:\n  - {name: knob, range: [-5, 5]}\n",
    )
    director = Director(preset, video=FakeVideo(shot_a + shot_b))
    made = requests(director, 6, {"knob": 0.3})
    assert [r.video_weight for r in made] == pytest.approx([1.0, 0.5, 0.5, 1.0, 0.5, 0.5])
    assert [r.video_cut for r in made] == [True, False, False, True, False, False]
    assert all(r.video_stabilization for r in made)
    # the weight is an expression, held to 0..1 (and said, like every held value)
    assert director.request(7, 7 / FPS, {"knob": 2.0}).video_weight == 1.0
    assert director.request(8, 8 / FPS, {"knob": -1.0}).video_weight == 0.0
    assert director.hold.clamped == 2


def test_without_a_video_every_request_is_as_before(tmp_path):
    """animation_mode off/2D (no video source): the requests are those of a Director without video (renders
    stay bit-identical); a live source that has no frame yet leaves the request as it was too."""
    for mode in ("off", "2D"):
        preset = video_preset(tmp_path, "translate_x: 2*t\n", mode=mode)
        for r in requests(Director(preset), 3):
            assert r.video is None and r.video_weight == 0.0 and not r.video_cut and not r.video_stabilization
    preset = video_preset(tmp_path, "reencode_each_frame: false\n")
    plain = requests(Director(video_preset(tmp_path, "", mode="2D")), 4)
    late = requests(Director(preset, video=FakeVideo([gradient(0)], starts_at=2 / FPS)), 4)
    assert late[:2] == plain[:2] and late[0].video is None
    assert late[2].video is not None and late[2].video_cut and late[2].video_weight == 1.0
    assert late[3].video_weight == 0.5 and not late[3].video_cut


# --- the diffusion engine -----------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [True, False], ids=["first frame", "next frame"])
@pytest.mark.parametrize("strength, steps", [(0.5, 1), (0.75, 2)])
def test_video_weight_1_is_diffusers_img2img_of_the_video_frame(model, first, strength, steps):
    from diffusers import StableDiffusionImg2ImgPipeline

    engine = FrameEngine(model, EngineSettings(width=SIZE, height=SIZE, steps=steps))
    if not first:  # a previous frame (not txt2img's noise) is there and is ignored at weight 1
        engine.previous = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, SIZE, SIZE))).float()
    video = gradient(0.7)
    request = FrameRequest(
        1, (("a red fox", 1.0),), strength=strength, seed=9, video=video, video_weight=1.0, video_stabilization=True
    )
    ours = engine.render_tensor(request)
    ref = pipeline(StableDiffusionImg2ImgPipeline, model)(
        "a red fox",
        image=torch.from_numpy(video).permute(2, 0, 1)[None].float() / 255.0,
        strength=strength,
        num_inference_steps=int(np.ceil(steps / strength)),
        guidance_scale=0.0,
        output_type="pt",
        generator=torch.Generator().manual_seed(9),
    ).images
    np.testing.assert_allclose((ours / 2 + 0.5).clamp(0, 1).numpy(), ref.numpy(), atol=1e-5)


def test_a_partial_video_weight_moves_the_warped_previous_frame_toward_the_video(tiny):
    rng = np.random.default_rng(1)
    previous = torch.from_numpy(rng.uniform(-1, 1, (1, 3, SIZE, SIZE))).float()
    video = gradient(1.1)
    settings = EngineSettings(width=SIZE, height=SIZE)

    def frame(start, **video_fields):
        engine = FrameEngine(tiny, settings)
        engine.previous = start
        return engine.render(FrameRequest(1, (("waves", 1.0),), seed=3, **video_fields))

    blended = torch.lerp(previous, image_to_tensor(video, "cpu", torch.float32), 0.3)
    assert np.array_equal(frame(previous, video=video, video_weight=0.3), frame(blended))
    assert np.array_equal(frame(previous, video=video, video_weight=0.0), frame(previous))


def test_a_video_frame_of_another_size_is_fitted_to_the_engine(tiny):
    big = np.repeat(np.repeat(gradient(0.4), 2, 0), 2, 1)  # 128x128
    engine = FrameEngine(tiny, EngineSettings(width=SIZE, height=SIZE))
    frame = engine.render(FrameRequest(0, (("waves", 1.0),), video=big, video_weight=1.0))
    assert frame.shape == (SIZE, SIZE, 3)
    small = fitted(image_to_tensor(big, "cpu", torch.float32), SIZE, SIZE)
    error = (small - image_to_tensor(gradient(0.4), "cpu", torch.float32)).abs()  # antialiased: a slight blur
    assert error.mean() < 0.01 and error.max() < 0.1
    # the float16 path that CUDA uses, run on the CPU (which has no float16 antialiased resize): the same frame
    from vj.engine.diffusion.models import load_components

    half = FrameEngine(load_components("tiny", device="cpu", dtype="float16"), EngineSettings(width=SIZE, height=SIZE))
    diff = np.abs(half.render(FrameRequest(0, (("waves", 1.0),), video=big, video_weight=1.0)).astype(int) - frame)
    assert diff.mean() < 0.5 and diff.max() <= 8


# --- pixel models -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perceptor():
    return tiny_perceptor("cpu")


def correlation(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("model", ["unlimited_palette", "limited_palette"])
def test_a_pixel_model_with_reencode_follows_the_video(tmp_path, perceptor, model):
    """One optimizer step per frame: each output frame is its own video frame re-encoded, moved a little by CLIP;
    it correlates with its video frame far better than with its neighbours (a video of stripes turning)."""
    frames = [gradient(0.5 * i, phase=1.3 * i) for i in range(8)]
    preset = video_preset(tmp_path, f"image_model: {model}\nsteps_per_frame: 1\npalettes: 4\npalette_size: 4\n")
    director = Director(preset, video=FakeVideo(frames))
    objective = Objective([perceptor], cutouts=CutoutSettings(count=4, augment=False))
    settings = PixelSettings(model=model, width=SIZE, height=SIZE, steps_per_frame=1, palettes=4, palette_size=4)
    engine = PixelEngine(settings, objective)
    outputs = [engine.render(r) for r in requests(director, len(frames))]  # the preset's guidance: "a forest"
    same = [correlation(outputs[i], frames[i]) for i in range(len(frames))]
    shifted = [correlation(outputs[i], frames[i - 1]) for i in range(1, len(frames))]
    assert min(same) > 0.8, same
    assert min(same) > max(shifted) + 0.3, (same, shifted)


def test_a_limited_palette_is_refit_at_cuts_and_held_within_a_shot(tmp_path, perceptor):
    shot_a = [gradient(0.0, phase=0.1 * i, colour=(1.0, 0.5, 0.1)) for i in range(3)]
    shot_b = [gradient(2.0, phase=0.1 * i, colour=(0.1, 0.6, 1.0)) for i in range(3)]
    preset = video_preset(tmp_path, "image_model: limited_palette\n")
    director = Director(preset, video=FakeVideo(shot_a + shot_b))
    settings = PixelSettings(model="limited_palette", width=SIZE, height=SIZE, steps_per_frame=3, palettes=3)
    engine = PixelEngine(settings, Objective([perceptor], cutouts=CutoutSettings(count=4, augment=False)))
    palettes = []
    for r in requests(director, 6):
        assert r.video_cut == (r.index in (0, 3))
        engine.render(r)
        palettes.append(engine.model.palette().detach().clone())
    grey = torch.linspace(0, 1, 6).view(-1, 1).repeat(1, 3)
    assert not torch.allclose(palettes[0][:6], grey, atol=0.05)  # the first frame's colours, not the grey ramp
    assert torch.equal(palettes[0], palettes[1]) and torch.equal(palettes[1], palettes[2])  # held in the shot
    assert not torch.allclose(palettes[2], palettes[3], atol=0.05)  # refit at the cut
    assert torch.equal(palettes[3], palettes[5])
    # frames that only move toward the video leave the palette to the optimizer, as pytti does without re-encoding
    guidance = GuidanceRequest(targets=(Target("text", "a forest", 1.0),))
    free = dict(video=shot_a[0], video_weight=0.5, video_stabilization=True, guidance=guidance)
    before = engine.model.palette().detach().clone()
    engine.render(FrameRequest(6, (("a forest", 1.0),), **free))
    assert not torch.equal(before, engine.model.palette().detach())


# --- stabilization targets the video ------------------------------------------------------------------------


class RecordingObjective(Objective):
    """An Objective that remembers each reference it is given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.references = []

    def backward(self, render, request, reference=None, init=None, generator=None, loss_scale=1.0):
        self.references.append(None if reference is None else reference.detach().clone())
        return super().backward(render, request, reference, init, generator, loss_scale)


def as01(rgb):
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize("engine_kind", ["diffusion", "unlimited_palette"])
def test_stabilization_targets_the_video_frame(tiny, perceptor, engine_kind):
    objective = RecordingObjective([perceptor], cutouts=CutoutSettings(count=4, augment=False))
    guidance = GuidanceRequest(direct_stabilization=1.0, semantic_stabilization=0.5, edge_stabilization=0.5)
    if engine_kind == "diffusion":
        engine = FrameEngine(tiny, EngineSettings(width=SIZE, height=SIZE), objective=objective)
        previous = image_to_tensor(gradient(2.5), "cpu", torch.float32)  # the engine keeps [-1, 1]
    else:
        settings = PixelSettings(model=engine_kind, width=SIZE, height=SIZE, steps_per_frame=2)
        engine = PixelEngine(settings, objective)
        previous = as01(gradient(2.5))  # the pixel engine keeps [0, 1]
    video = gradient(0.3)
    for to_video, target in ((True, video), (False, gradient(2.5))):  # False: the warped previous frame (no motion)
        objective.references.clear()
        engine.previous = previous
        request = FrameRequest(1, (), video=video, video_weight=0.25, video_stabilization=to_video, guidance=guidance)
        engine.render(request)
        assert objective.references, to_video
        assert all(torch.allclose(r, as01(target), atol=1e-5) for r in objective.references), to_video


def test_direct_stabilization_pulls_a_pixel_frame_toward_the_video(perceptor):
    """With the video kept out of the input (weight 0), only stabilization brings it in: the frame moves toward
    the video frame; targeting the previous frame instead, it stays where it was."""
    settings = PixelSettings(model="unlimited_palette", width=SIZE, height=SIZE, steps_per_frame=20)
    start, video = gradient(2.5), gradient(0.3)
    guidance = GuidanceRequest(direct_stabilization=1.0)
    distances = {}
    for to_video in (True, False):
        engine = PixelEngine(settings, Objective([perceptor], cutouts=CutoutSettings(count=4, augment=False)))
        engine.previous = as01(start)
        frame = engine.render(
            FrameRequest(1, (), video=video, video_weight=0.0, video_stabilization=to_video, guidance=guidance)
        )
        distances[to_video] = np.abs(frame.astype(float) - video).mean()
    before = np.abs(start.astype(float) - video).mean()
    assert distances[True] < 0.8 * before and distances[False] == pytest.approx(before, abs=1.0)
