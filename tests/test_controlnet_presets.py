"""ControlNets from presets: the `controlnets` key checked by `vj check` (one line per problem), the Director's
per-frame scales and pictures, control maps made once per source picture, and shows that render with nets next to
latent blends, CLIP guidance, token edits, guide images and pixel_size."""

import dataclasses
import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, problems, run_vj, write
from video_codes import write_coded_video
from vj.config.loading import load_preset
from vj.engine.diffusion import control_maps
from vj.engine.diffusion.control_maps import ControlInput, ControlMaps
from vj.engine.diffusion.net_fit import CONFIGS, TINY_CONTROLNET, net_for_model
from vj.show.session import ShowSession

HEAD = "scenes: a forest | sparks:0.3 || a city at night\nmodel: tiny\nwidth: 64\nheight: 64\nscene_duration: 1\n"


@pytest.fixture
def logo(tmp_path):
    """A white square on black, 64x64, as logo.png next to the presets."""
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[16:48, 16:48] = 255
    Image.fromarray(picture).save(tmp_path / "logo.png")
    return picture


def nets(*items):
    return "controlnets:\n" + "".join(f"  - {item}\n" for item in items) if items else ""


def test_a_preset_with_nets_loads_typed(tmp_path, logo):
    write_coded_video(tmp_path / "dance.mp4", 10, width=64, height=64)
    path = write(
        tmp_path,
        HEAD
        + "controls:\n  - {name: knob1, default: 0.5}\n"
        + nets(
            "{model: tiny, image: logo.png, preprocessor: canny, scale: 0.5 + knob1, low_threshold: 50}",
            "{model: tiny, image: dance.mp4, start: 0.25, end: 0.75, invert: true}",
            "{model: tiny, image: previous, preprocessor: depth}",
        ),
    )
    preset = load_preset(path)
    canny, video, previous = preset.controlnets
    assert canny.image == tmp_path / "logo.png" and not canny.video_file
    assert canny.scale({"knob1": 1.0}) == 1.5 and "knob1" in canny.scale.names
    assert dict(canny.options) == {"invert": False, "low_threshold": 50.0, "high_threshold": 200.0}
    assert video.image == tmp_path / "dance.mp4" and video.video_file and (video.start, video.end) == (0.25, 0.75)
    assert dict(video.options) == {"invert": True}
    assert previous.image == "previous" and previous.preprocessor == "depth"
    result = run_vj("check", path)
    assert result.returncode == 0, result.stderr
    assert "ControlNet: tiny (canny of logo.png), tiny (none of dance.mp4), tiny (depth of previous)" in result.stdout


def test_every_problem_is_one_line_naming_the_item(tmp_path, logo):
    (tmp_path / "notes.txt").write_text("not a picture")
    path = write(
        tmp_path,
        HEAD
        + nets(
            "{model: tiny, image: logo.png, preprocessor: sobel}",
            "{model: tiny, image: missing.png}",
            "{model: tiny, image: video}",
            "{model: tiny, image: previous, start: 0.6, end: 0.4}",
            "{model: tiny, image: previous, preprocessor: canny, low_threshold: 300}",
            "{model: tiny, image: previous, scale: 99}",
            "{model: tiny, image: previous, scale: 'knob9 * 2'}",
            "{model: canny, image: previous}",
            "{model: tiny, image: notes.txt}",
            "{model: tiny, image: previous, strength: 1}",
        ),
    )
    found = problems(path)
    assert all("\n" not in p for p in found)
    expected = [
        ":7: controlnets[0].preprocessor: must be one of none, canny, depth, got 'sobel'",
        ":8: controlnets[1].image: 'missing.png' not found (relative to the preset",
        ":9: controlnets[2].image: `video` is the Video Source frame: set animation_mode: Video Source",
        ":10: controlnets[3].end: end 0.4 must be more than start 0.6",
        ":11: controlnets[4].low_threshold: 300 is more than high_threshold 200",
        ":12: controlnets[5].scale: 99 is outside the ControlNet scale range 0..10",
        ":13: controlnets[6].scale: ",
        ":14: controlnets[7].model: 'canny' for model tiny: unknown ControlNet 'canny': use a hub id",
        ":15: controlnets[8].image: 'notes.txt' is neither a picture nor a video vj can read",
        ":16: controlnets[9].strength: unknown key",
    ]
    assert len(found) == len(expected), found
    for problem, fragment in zip(found, expected):
        assert fragment in problem, (fragment, problem)
    assert "knob9" in found[6]


def test_nets_need_the_diffusion_model(tmp_path):
    path = write(tmp_path, HEAD + "image_model: unlimited_palette\n" + nets("{model: tiny, image: previous}"))
    (problem,) = problems(path)
    assert "controlnets[0]: ControlNets steer the diffusion model; image_model is unlimited_palette" in problem


def saved(folder, config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_check_refuses_a_net_that_does_not_fit_the_model_from_their_configs(tmp_path):
    """Local folders with only their configs (no weights): an SD 1.x-shaped net for an SD 2.x-shaped model is refused
    naming both families and a model it would fit; an SD 2.x one passes the check."""
    turbo = json.loads((CONFIGS / "sd-turbo" / "unet.json").read_text())
    saved(tmp_path / "model" / "unet", turbo)
    saved(tmp_path / "sd21-net", turbo)
    saved(tmp_path / "sd15-net", {**turbo, "cross_attention_dim": 768})
    saved(tmp_path / "shallow-net", {**turbo, "block_out_channels": [320, 640, 1280]})
    head = HEAD.replace("model: tiny", f"model: {tmp_path / 'model'}")
    ok = write(tmp_path, head + nets("{model: sd21-net, image: previous}"), "ok.yaml")
    assert load_preset(ok).controlnets[0].model == str(tmp_path / "sd21-net")  # relative to the preset
    bad = write(tmp_path, head + nets("{model: sd15-net, image: previous}", "{model: shallow-net, image: previous}"))
    first, second = problems(bad)
    assert "controlnets[0].model: 'sd15-net' for model" in first
    assert "SD 1.x-based (cross-attention 768)" in first and "SD 2.x-shaped model" in first
    assert "it fits an SD 1.5-based model" in first and "needs SD 2.x-based ControlNets" in first
    assert "controlnets[1].model" in second and "block_out_channels" in second
    # with the tiny model every net is the tiny one (as the perceptors and the depth model), so the check passes
    tiny = write(tmp_path, HEAD + nets("{model: sd15-net, image: previous}"), "tiny.yaml")
    assert load_preset(tiny).controlnets[0].model == str(tmp_path / "sd15-net")
    assert net_for_model("sd15-net", "tiny") == "tiny" and net_for_model("x/y", "arch:sd-turbo") == "arch:sd21"
    assert TINY_CONTROLNET["cross_attention_dim"] == 32


def frames(preset, count, inputs=None, settings=None):
    """`count` frames of a preset's show (the Director's requests through the session's engine), and the engine."""
    session = ShowSession.open(preset, device="cpu", dtype="float32")
    try:
        director, engine = session.director(), session.engine(settings)
        fps = preset.frames_per_second
        shown = [engine.render(director.request(i, i / fps, inputs or {})) for i in range(count)]
        return shown, engine, director
    finally:
        session.close()


@pytest.fixture
def preset_with(tmp_path, logo):
    def make(*items, extra="", overrides=None):
        return load_preset(write(tmp_path, HEAD + extra + nets(*items), "n.yaml"), overrides)

    return make


def test_the_director_sends_each_nets_scale_and_picture(preset_with, tmp_path):
    write_coded_video(tmp_path / "dance.mp4", 12, fps=12, width=64, height=64)
    preset = preset_with(
        "{model: tiny, image: logo.png, scale: 2 * knob1}",
        "{model: tiny, image: previous, preprocessor: canny, scale: '1e9 * knob1'}",
        "{model: tiny, image: dance.mp4, start: 0.5}",
        extra="frames_per_second: 12\ncontrols:\n  - {name: knob1, default: 0.25}\n",
    )
    heard = []
    session = ShowSession.open(preset, device="cpu", dtype="float32")
    try:
        director = session.director()
        director.hold.notify = heard.append
        first = director.request(0, 0.0, {})
        later = director.request(5, 5 / 12, {"knob1": 0.5})
    finally:
        session.close()
    picture, previous, video = first.controls
    assert picture.scale == 0.5 and picture.model == "tiny" and picture.image.shape == (64, 64, 3)
    assert later.controls[0].scale == 1.0 and later.controls[0].image is picture.image  # read once
    assert previous.previous and previous.image is None and previous.preprocessor == "canny"
    assert previous.scale == 10.0 and any("controlnets[1].scale" in h and "held to 0..10" in h for h in heard)
    assert (video.start, video.end) == (0.5, 1.0)
    from video_codes import read_code

    assert read_code(video.image) == 0 and read_code(later.controls[2].image) == 5  # the video's frame at t


def test_a_video_source_net_takes_the_frame_of_the_request(tmp_path):
    write_coded_video(tmp_path / "clip.mp4", 12, fps=12, width=64, height=64)
    path = write(
        tmp_path,
        HEAD + "animation_mode: Video Source\nvideo_path: clip.mp4\nframes_per_second: 12\n"
        "controlnets:\n  - {model: tiny, image: video, preprocessor: canny}\n",
    )
    session = ShowSession.open(load_preset(path), device="cpu", dtype="float32")
    try:
        director, engine = session.director(), session.engine()
        requests = [director.request(i, i / 12, {}) for i in range(3)]
        for request in requests:
            engine.render(request)
    finally:
        session.close()
    assert all(r.controls[0].image is r.video and r.video is not None for r in requests)
    assert len(engine.control_maps) == 1 and engine.control_maps[0].shape == (1, 3, 64, 64)


def test_scale_zero_is_no_net_and_a_net_changes_the_frames(preset_with):
    plain, _, _ = frames(preset_with(), 4)
    off, _, _ = frames(preset_with("{model: tiny, image: logo.png, scale: 0}"), 4)
    on, engine, _ = frames(preset_with("{model: tiny, image: logo.png, preprocessor: canny}"), 4)
    assert all(np.array_equal(a, b) for a, b in zip(plain, off))
    assert all(np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(plain, on))
    (shown,) = engine.control_maps
    edges = shown[0, 0].numpy()
    assert set(np.unique(edges)) == {0.0, 1.0}
    assert list(np.flatnonzero(edges[30])) == [15, 47] == list(np.flatnonzero(edges[:, 30]))  # the square's rim


def test_previous_has_no_map_on_the_first_frame_then_the_moved_previous_frame(preset_with):
    preset = preset_with("{model: tiny, image: previous}", extra="translate_x: 3\n")
    session = ShowSession.open(preset, device="cpu", dtype="float32")
    try:
        director, engine = session.director(), session.engine()
        first = engine.render(director.request(0, 0.0, {}))
        assert engine.control_maps == ()
        engine.render(director.request(1, 1 / 12, {}))
    finally:
        session.close()
    (shown,) = engine.control_maps
    moved = shown[0].permute(1, 2, 0).numpy() * 255
    # the first frame moved 3 pixels right (pytti's translate_x): its columns 0..60 are the map's columns 3..63
    assert np.abs(moved[:, 3:] - first[:, :-3]).mean() < 1.0 and np.abs(moved[:, :-3] - first[:, :-3]).mean() > 1.0


def test_a_map_is_made_once_per_source_picture(monkeypatch):
    calls = []
    real = control_maps.canny

    def counted(image, low, high):
        calls.append((low, high))
        return real(image, low, high)

    monkeypatch.setattr(control_maps, "canny", counted)
    depths = []

    def depth(image):
        depths.append(image.shape)
        return 1.0 + image[:, :1]

    maps = ControlMaps(32, 32, "cpu", torch.float32, depth)
    picture, other = np.zeros((40, 40, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8)
    canny = ControlInput("a", 1.0, picture, preprocessor="canny", options=(("invert", False),))
    both = [canny, dataclasses.replace(canny, model="b"), ControlInput("c", 1.0, picture, preprocessor="depth")]
    first = maps.maps(both)
    assert len(calls) == 1 and len(depths) == 1 and first[0] is first[1] and first[0].shape == (1, 3, 32, 32)
    again = maps.maps(both)
    assert len(calls) == 1 and len(depths) == 1 and again[0] is first[0] and again[2] is first[2]
    maps.maps([dataclasses.replace(canny, image=other)])
    assert len(calls) == 2  # a new picture: a new map
    maps.maps([dataclasses.replace(canny, image=other, options=(("invert", True),))])
    assert len(calls) == 3  # other options: another map
    assert maps.maps([ControlInput("a", 1.0, None)]) == [None]  # no picture yet: the net rests


def test_a_depth_net_uses_the_shows_depth_model(preset_with):
    preset = preset_with("{model: tiny, image: logo.png, preprocessor: depth}")
    shown, engine, _ = frames(preset, 2)
    (depth,) = engine.control_maps
    assert engine.depth is not None and depth.shape == (1, 3, 64, 64)
    assert 0.0 <= float(depth.min()) and float(depth.max()) <= 1.0 and float(depth.std()) > 0


def test_maps_follow_the_engines_size_after_a_smaller_engine_and_pixel_size(preset_with):
    """After the out-of-memory fallback (a new engine at half the size) and with pixel_size, the maps are made at
    the size the engine renders."""
    preset = preset_with("{model: tiny, image: logo.png, preprocessor: canny}")
    settings = dataclasses.replace(ShowSession(preset, None).settings, width=32, height=32)
    shown, engine, _ = frames(preset, 2, settings=settings)
    assert shown[-1].shape == (32, 32, 3) and engine.control_maps[0].shape == (1, 3, 32, 32)
    blocky = preset_with("{model: tiny, image: logo.png}", extra="pixel_size: 2\n", overrides={"width": 128})
    shown, engine, _ = frames(blocky, 2)
    assert shown[-1].shape == (64, 128, 3) and engine.control_maps[0].shape == (1, 3, 64, 64)


@pytest.mark.parametrize("steps", [1, 4])
def test_nets_work_with_latent_blends_guidance_token_edits_and_guide_images(tmp_path, logo, steps):
    """Everything at once, with the tiny models: the show renders, and the nets still change its frames."""
    head = HEAD.replace("a forest", "a {forest + 0.5*jungle}") + f"steps: {steps}\ntransition_mode: latent_blend\n"
    head += "transition_time: 0.5\ntransition_quality: lowest\nclip_guidance_scale: 100\ncutouts: 4\n"
    head += "perceptors: [ViT-B-32/openai]\nguide_images:\n  - {image: logo.png, strength: 0.3}\n"
    plain = load_preset(write(tmp_path, head, "plain.yaml"))
    steered = load_preset(write(tmp_path, head + nets("{model: tiny, image: logo.png, preprocessor: canny}")))
    session = ShowSession.open(steered, device="cpu", dtype="float32")
    try:
        session.prepare([(0, 1)])
        director, engine = session.director(), session.engine()
        shown = [engine.render(director.request(i, i / 12, {})) for i in range(9, 13)]  # the transition's frames
        blending = director.blending
    finally:
        session.close()
    assert blending == "latent blend" and len(engine.control_maps) == 1
    reference, _, _ = frames(plain, 13)
    assert all(np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(shown, reference[9:]))


def test_a_render_with_nets_writes_the_whole_track(tmp_path, logo):
    write_coded_video(tmp_path / "dance.mp4", 6, fps=6, width=64, height=64)
    path = write(
        tmp_path,
        HEAD + "frames_per_second: 6\n" + nets("{model: tiny, image: dance.mp4, preprocessor: canny}"),
    )
    out = tmp_path / "out.mp4"
    result = run_vj("render", path, "-o", out, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 12 and decoded[0].shape == (64, 64, 3)


def test_a_reload_that_adds_a_net_waits_for_a_restart(preset_with):
    preset = preset_with("{model: tiny, image: logo.png}")
    session = ShowSession.open(preset, device="cpu", dtype="float32")
    try:
        engine = session.engine()
        assert session.engines.use_preset(preset, engine) == []
        arch = dataclasses.replace(preset, controlnets=(dataclasses.replace(preset.controlnets[0], model="x/net"),))
        arch = dataclasses.replace(arch, model="stabilityai/sd-turbo")
        (warning,) = [w for w in session.engines.use_preset(arch, engine) if "ControlNet" in w]
        assert warning == "ControlNet x/net: takes effect at restart (its weights load then)"
    finally:
        session.close()


def cached(hub, repo, filename, config):
    """A file of hub repo `repo` in the Hugging Face cache `hub`, laid out as huggingface_hub keeps it."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("abc123")
    path = folder / "snapshots" / "abc123" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))


def test_check_reads_hub_ids_configs_from_the_cache(hub, tmp_path):
    """Hub ids are judged from the configs in the Hugging Face cache, without weights or network; a net whose
    config is not here is left to the loader (which says how to get the weights)."""
    turbo = json.loads((CONFIGS / "sd-turbo" / "unet.json").read_text())
    cached(hub, "org/model", "unet/config.json", turbo)
    cached(hub, "org/sd15-canny", "config.json", {**turbo, "cross_attention_dim": 768})
    cached(hub, "org/sd21-canny", "config.json", turbo)
    head = HEAD.replace("model: tiny", "model: org/model")
    (problem,) = problems(write(tmp_path, head + nets("{model: org/sd15-canny, image: previous}")))
    assert "controlnets[0].model: 'org/sd15-canny' for model org/model: this ControlNet is SD 1.x-based" in problem
    ok = head + nets("{model: org/sd21-canny, image: previous}", "{model: org/not-here, image: previous}")
    assert [c.model for c in load_preset(write(tmp_path, ok, "ok.yaml")).controlnets] == [
        "org/sd21-canny",
        "org/not-here",
    ]
