"""The live show's control-map preview: key C and /vj/control_preview toggle it, the engine thread makes thumbnails
of the ControlNets' maps only while it is on, the window draws them at the bottom left (Xvfb), and neither the
outputs nor the recording ever get them."""

import numpy as np
import pygame
import pytest
import torch

from test_live_show import PRESET, Clock, make_state
from test_osc import Rig
from vj.live import loop as loop_module
from vj.live.audio_feed import SilentAudio
from vj.live.controls import actions as act
from vj.live.display import Display, key_action
from vj.live.headless import Headless
from vj.live.hud import PREVIEW_BORDER
from vj.live.keys import KEY_HELP
from vj.live.loop import NO_CONTROLNETS, NO_PREVIEW_HERE, EngineLoop, Show
from vj.live.slot import FrameSlot
from vj.live.thumbnails import PREVIEW_PIXELS, thumbnails
from vj.show.engines import engine_settings
from xvfb import xvfb

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def flat_map(colour, height, width):
    """A (1, 3, H, W) control map of one colour, as the engine leaves them: floats in [0, 1]."""
    return torch.tensor(colour, dtype=torch.float32).div(255).view(1, 3, 1, 1).expand(1, 3, height, width).clone()


class MapEngine:
    """An engine that renders a flat blue frame and, like the diffusion engine with ControlNets, leaves the maps
    that steered it in `control_maps` (without `maps`: no such attribute, as pixel models)."""

    def __init__(self, maps=None, shape=(48, 64)):
        if maps is not None:
            self.control_maps = tuple(maps)
        self.rgb = np.full((*shape, 3), BLUE, np.uint8)

    def render(self, request):
        return self.rgb.copy()

    def reset(self):
        pass


@pytest.fixture
def preset_file(tmp_path):
    path = tmp_path / "show.yaml"
    path.write_text(PRESET)
    return path


def map_loop(preset_file, engine):
    state = make_state(preset_file)
    clock = Clock()
    audio = SilentAudio(state.preset, clock)
    return EngineLoop(state, lambda settings: engine, engine_settings(state.preset), audio, FrameSlot(), clock)


class PreviewDisplay:
    """What the show reads of a window that draws previews; keeps each present's keyword arguments."""

    fps, vsync, blend, flipped_at = 0.0, True, False, None
    shows_previews = True

    def __init__(self):
        self.presents = []

    def present(self, frame=None, **kwargs):
        self.presents.append((frame, kwargs))


class Output:
    """A --out output that keeps copies of what it is sent."""

    target, warning = "test://out", None

    def __init__(self):
        self.sent = []

    def send(self, rgb):
        self.sent.append(rgb.copy())

    def stats(self):
        return {}


class Recording:
    """The parts of ShowRecording the show calls; keeps the frames it is given."""

    warning = None

    def __init__(self):
        self.frames, self.shown_frames = [], []

    def frame(self, request, rgb, *args):
        self.frames.append(rgb.copy())

    def shown(self, rgb, t):
        self.shown_frames.append(rgb.copy())

    def action(self, *args):
        pass

    def changes(self, *args):
        pass

    def preset_used(self, *args):
        pass

    def scenes(self, *args):
        pass

    def display_action(self, *args):
        pass


# -- inputs ----------------------------------------------------------------------------------------------------
def test_key_c_toggles_the_control_preview():
    assert key_action(pygame.K_c) == act.ToggleControlPreview()
    assert act.ToggleControlPreview() == act.ToggleControlPreview(None)
    assert [keys for keys, *_ in KEY_HELP].count("C") == 1


@pytest.mark.parametrize(
    "args, expected",
    [((), None), ((1,), True), ((0,), False), ((1.0,), True), ((0.0,), False), ((True,), True), ((False,), False)],
)
def test_osc_control_preview_sets_or_toggles(args, expected):
    rig = Rig()
    try:
        rig.send("/vj/control_preview", *args)
        assert rig.actions_until_sentinel()[0] == act.ToggleControlPreview(expected)
    finally:
        rig.close()


@pytest.mark.parametrize("args", [(2,), (0.5,), ("on",), (1, 0)])
def test_osc_control_preview_drops_anything_else(args):
    rig = Rig()
    try:
        rig.send("/vj/control_preview", *args)
        assert rig.actions_until_sentinel() == [act.SetControl("hue", 0.125)]  # the sentinel alone
        assert rig.osc.dropped == 1
    finally:
        rig.close()


# -- thumbnails ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, expected",
    [
        ((1, 3, 480, 640), (120, 160)),  # landscape: the long side at the limit, the aspect kept
        ((1, 3, 640, 200), (160, 50)),  # portrait
        ((1, 3, 64, 48), (64, 48)),  # small maps are not enlarged
        ((3, 320, 320), (160, 160)),  # without the batch dimension
    ],
)
def test_thumbnails_keep_the_aspect_and_fit_the_limit(shape, expected):
    (thumb,) = thumbnails([torch.full(shape, 0.5)])
    assert thumb.shape == (*expected, 3) and thumb.dtype == np.uint8 and thumb.flags.c_contiguous
    assert max(thumb.shape[:2]) <= PREVIEW_PIXELS and np.all(thumb == 128)


def test_thumbnails_keep_colours_and_grey_maps():
    red, grey = thumbnails([flat_map(RED, 300, 400), torch.full((1, 1, 90, 90), 0.25)])
    assert red.shape == (120, 160, 3) and np.all(red == RED)
    assert grey.shape == (90, 90, 3) and np.all(grey == 64)


def test_thumbnails_are_antialiased():
    """Fine noise shrunk 4x: antialiasing averages each 4x4 patch (and more), plain bilinear only 2x2 of them."""
    noise = torch.rand(1, 3, 640, 640, generator=torch.Generator().manual_seed(0))
    (thumb,) = thumbnails([noise])
    plain = torch.nn.functional.interpolate(noise, size=(160, 160), mode="bilinear", align_corners=False)
    assert thumb.shape == (160, 160, 3)
    assert plain.std() > 0.12 and thumb.std() / 255 < 0.08
    assert abs(thumb.mean() / 255 - 0.5) < 0.01


# -- the engine thread and the show ------------------------------------------------------------------------------
def test_the_toggle_sets_and_clears_the_engine_loops_event_and_the_status_says_so(preset_file):
    loop = map_loop(preset_file, MapEngine())
    show = Show(loop, display=PreviewDisplay(), bus=act.ActionBus(), clock=loop.clock)
    assert not loop.control_preview.is_set() and show.record()["control_preview"] is False  # off by default
    seen = []
    for action in (
        act.ToggleControlPreview(),
        act.ToggleControlPreview(),
        act.ToggleControlPreview(True),
        act.ToggleControlPreview(True),
        act.ToggleControlPreview(False),
    ):
        show.handle(action)
        seen.append((loop.control_preview.is_set(), show.record()["control_preview"]))
    assert seen == [(True, True), (False, False), (True, True), (True, True), (False, False)]
    assert loop.inbox.drain() == []  # the show's to apply, not the engine's


def test_frames_carry_thumbnails_only_while_the_preview_is_on(preset_file, monkeypatch):
    made = []

    def counting(maps):
        made.append(len(maps))
        return thumbnails(maps)

    monkeypatch.setattr(loop_module, "thumbnails", counting)
    loop = map_loop(preset_file, MapEngine([flat_map(RED, 480, 640), flat_map(GREEN, 640, 200)]))
    show = Show(loop, display=PreviewDisplay(), bus=act.ActionBus(), clock=loop.clock)
    loop.step()
    assert loop.slot.take()[0].previews == () and made == []  # off: nothing made, nothing paid for
    show.handle(act.ToggleControlPreview())
    loop.step()
    frame, new = loop.slot.take()
    assert new and made == [2]
    assert [p.shape for p in frame.previews] == [(120, 160, 3), (160, 50, 3)]
    assert np.all(frame.previews[0] == RED) and np.all(frame.previews[1] == GREEN)
    assert np.all(frame.rgb == BLUE)  # the frame itself is untouched
    show.handle(act.ToggleControlPreview())
    loop.step()
    assert loop.slot.take()[0].previews == () and made == [2]


def test_a_preset_without_controlnets_says_so_once_per_toggle(preset_file):
    loop = map_loop(preset_file, MapEngine(maps=None))  # no control_maps at all, as a pixel model
    said = []
    loop.state.notes.add = said.append
    show = Show(loop, display=PreviewDisplay(), bus=act.ActionBus(), clock=loop.clock)
    loop.step()
    assert said == []  # off: nothing to say
    show.handle(act.ToggleControlPreview(True))
    for _ in range(3):
        loop.step()
        assert loop.slot.take()[0].previews == ()
    assert said == [NO_CONTROLNETS]
    show.handle(act.ToggleControlPreview(False))
    loop.step()
    show.handle(act.ToggleControlPreview(True))
    loop.engine.control_maps = ()  # an engine with ControlNet support, but none in this preset
    loop.step()
    assert said == [NO_CONTROLNETS, NO_CONTROLNETS]


def test_a_failing_thumbnail_costs_the_preview_never_the_frame(preset_file, monkeypatch):
    def broken(maps):
        raise RuntimeError("no memory for thumbnails")

    monkeypatch.setattr(loop_module, "thumbnails", broken)
    loop = map_loop(preset_file, MapEngine([flat_map(RED, 64, 64)]))
    loop.control_preview.set()
    loop.step()
    frame, new = loop.slot.take()
    assert new and frame.previews == () and np.all(frame.rgb == BLUE)
    assert "control preview: RuntimeError: no memory for thumbnails" in loop.state.warnings.current()


def test_headless_keeps_the_preview_off_and_says_why(preset_file):
    loop = map_loop(preset_file, MapEngine([flat_map(RED, 64, 64)]))
    show = Show(loop, display=Headless(), bus=act.ActionBus(), clock=loop.clock)
    show.handle(act.ToggleControlPreview())
    assert not loop.control_preview.is_set() and NO_PREVIEW_HERE in loop.state.notes.current()
    loop.step()
    show._present()  # Headless.present takes no previews: it is never given any


def test_the_display_gets_the_newest_frames_previews_and_outputs_and_recording_only_the_frame(preset_file):
    loop = map_loop(preset_file, MapEngine([flat_map(RED, 480, 640)]))
    loop.recording = Recording()
    display, output = PreviewDisplay(), Output()
    show = Show(loop, display=display, bus=act.ActionBus(), clock=loop.clock, hud=False, outputs=[output])
    show.handle(act.ToggleControlPreview())
    loop.step()
    show._present()
    show._present(force=True)  # a repeat of the same frame (an action was handled): the previews again
    (first, kw1), (again, kw2) = display.presents
    assert first is not None and again is None
    assert kw1["previews"] is first.previews and kw2["previews"] is first.previews
    assert "hud_lines" in kw1 and kw1["hud_lines"] is None  # previews do not need the HUD
    show.handle(act.ToggleControlPreview())
    show._present(force=True)
    assert "previews" not in display.presents[-1][1]  # off: none, even though the frame still carries them
    sent = output.sent + loop.recording.frames + loop.recording.shown_frames
    assert len(output.sent) == 1 and len(loop.recording.frames) == 1 and len(loop.recording.shown_frames) == 1
    assert all(rgb.shape == (48, 64, 3) and np.all(rgb == BLUE) for rgb in sent)


# -- on a real X server ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def xserver():
    with xvfb(1280, 720) as name, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", name)
        mp.setenv("SDL_VIDEODRIVER", "x11")
        yield name


def surface_pixels():
    return pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)


def box(mask):
    """(x0, y0, x1, y1) of the True pixels (x1, y1 exclusive)."""
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def exactly(img, colour):
    return np.all(img == colour, axis=-1)


def test_the_window_draws_the_previews_at_the_bottom_left_and_the_output_never_gets_them(preset_file, xserver):
    maps = [flat_map(RED, 270, 480), flat_map(GREEN, 60, 60)]  # thumbnails 160x90 and 60x60
    loop = map_loop(preset_file, MapEngine(maps))
    output = Output()
    display = Display((640, 480), title="vj preview test")
    try:
        show = Show(loop, display=display, bus=act.ActionBus(), clock=loop.clock, hud=False, outputs=[output])
        loop.step()
        show._present()
        plain = surface_pixels()
        assert exactly(plain, BLUE).all()  # off: the frame alone (64x48 fills 640x480)
        show.handle(act.ToggleControlPreview())
        loop.step()
        show._present()
        shown = surface_pixels()
        x0, y0, x1, y1 = box(exactly(shown, RED))
        assert (x1 - x0, y1 - y0) == (160, 90)  # the thumbnail at its own size
        assert exactly(shown[y0:y1, x0:x1], RED).all()
        gx0, gy0, gx1, gy1 = box(exactly(shown, GREEN))
        assert (gx1 - gx0, gy1 - gy0) == (60, 60) and gx0 > x1 and gy0 == y0  # side by side, to the right
        assert x0 < 32 and 480 - 32 < y1 < 480  # at the bottom left
        assert tuple(shown[y0 - 1, x0 + 10]) == PREVIEW_BORDER and tuple(shown[y1, x0 + 10]) == PREVIEW_BORDER
        label = shown[y0 - 30 : y0 - 2, x0 : x0 + 80]
        assert (label.min(axis=-1) > 150).sum() > 20, "no 'control 1' label above the thumbnail"
        outside = np.ones(shown.shape[:2], bool)
        outside[y0 - 40 :, : gx1 + 16] = False
        assert exactly(shown[outside], BLUE).all()  # the rest of the picture is untouched
        show.handle(act.ToggleControlPreview())
        show._present(force=True)
        assert exactly(surface_pixels(), BLUE).all()  # off again: gone at once
    finally:
        display.close()
    assert len(output.sent) == 2 and all(exactly(rgb, BLUE).all() for rgb in output.sent)
