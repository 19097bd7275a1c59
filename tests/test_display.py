"""The live display on a real X server (Xvfb): window size, letterboxing, blackout, HUD, keys, errors, close.

Pixels are read back twice: from pygame's display surface and from the X server itself (`xwd -root`).
pygame allows one window per process: each test opens its Display and closes it before the next.
"""

import subprocess
import time

import numpy as np
import pygame
import pytest

from xvfb import screenshot, xvfb
from vj.live.controls import actions as act
from vj.live import hud
from vj.live.display import Display, DisplayError, fit_rect, key_action
from vj.live.slot import ShownFrame

RED, BLUE, GREEN, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255), (0, 0, 0)
DESKTOP = (1280, 720)


@pytest.fixture(scope="module")
def xserver():
    with xvfb(*DESKTOP) as name, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", name)
        mp.setenv("SDL_VIDEODRIVER", "x11")
        yield name


@pytest.fixture
def display(xserver):
    d = Display((640, 360), title="vj test")
    yield d
    d.close()


def quadrants(height, width):
    """A frame whose quadrants are red, blue (top) and green, white (bottom): shows aspect and orientation."""
    rgb = np.empty((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    rgb[:h, :w], rgb[:h, w:], rgb[h:, :w], rgb[h:, w:] = RED, BLUE, GREEN, WHITE
    return rgb


def frame(rgb, index=0, made_at=0.0):
    return ShownFrame(rgb=rgb, index=index, heard_at=0.0, made_at=made_at)


def surface_pixels():
    """The display surface as (height, width, 3) RGB."""
    return pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)


_windows = []


def sdl_window():
    """pygame's window object. Kept alive: SDL holds a pointer to the newest one, which pygame's events read."""
    from pygame._sdl2.video import Window

    _windows.append(Window.from_display_module())
    return _windows[-1]


def window_pixels(xserver, size):
    """The window's area of a real screenshot of the X server."""
    x, y = sdl_window().position
    return screenshot(xserver)[y : y + size[1], x : x + size[0]]


def assert_region(img, rect, colour, name):
    x0, y0, x1, y1 = rect
    region = img[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    worst = np.abs(region - colour).max()
    assert worst <= 8, f"{name}: expected {colour} in x {x0}..{x1}, y {y0}..{y1}, off by up to {worst}"


def assert_letterboxed(img, rect):
    """`img` shows the quadrant frame in `rect` (x, y, w, h) and black outside it (2-pixel slack at edges)."""
    x, y, w, h = rect
    H, W = img.shape[:2]
    m = 2
    assert_region(img, (x + m, y + m, x + w // 2 - m, y + h // 2 - m), RED, "top left")
    assert_region(img, (x + w // 2 + m, y + m, x + w - m, y + h // 2 - m), BLUE, "top right")
    assert_region(img, (x + m, y + h // 2 + m, x + w // 2 - m, y + h - m), GREEN, "bottom left")
    assert_region(img, (x + w // 2 + m, y + h // 2 + m, x + w - m, y + h - m), WHITE, "bottom right")
    for bar in ((0, 0, W, y), (0, y + h, W, H), (0, 0, x, H), (x + w, 0, W, H)):
        if bar[2] > bar[0] and bar[3] > bar[1]:
            assert_region(img, bar, BLACK, f"bar {bar}")
    # The frame's first and last rows and columns are not black: the rect is exact, not just roughly right.
    assert img[y, x + 1].max() > 100 and img[y + h - 1, x + w - 2].max() > 100
    assert img[y + 1, x].max() > 100 and img[y + h - 2, x + w - 1].max() > 100


def test_window_opens_at_requested_size(display, xserver):
    assert display.size == (640, 360)
    assert pygame.display.get_window_size() == (640, 360)
    display.present(frame(np.full((360, 640, 3), 200, np.uint8)))
    shot = screenshot(xserver)
    grey = np.all(shot == 200, axis=-1)
    ys, xs = np.nonzero(grey)
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (640, 360)
    assert grey.sum() == 640 * 360
    print(f"\nvsync {display.vsync}")


@pytest.mark.parametrize(
    "frame_hw, rect",
    [
        ((200, 400), (0, 20, 640, 320)),  # 2:1 in 16:9: bars above and below
        ((300, 300), (140, 0, 360, 360)),  # square: bars left and right
        ((720, 1280), (0, 0, 640, 360)),  # same aspect, larger: fills the window
    ],
)
def test_frame_is_letterboxed_with_aspect_kept(display, xserver, frame_hw, rect):
    assert tuple(fit_rect(frame_hw[::-1], (640, 360))) == rect
    rgb = quadrants(*frame_hw)
    started = time.perf_counter()
    display.present(frame(rgb))
    new_ms = (time.perf_counter() - started) * 1e3
    assert_letterboxed(surface_pixels(), rect)
    on_screen = window_pixels(xserver, (640, 360))
    assert_letterboxed(on_screen, rect)
    assert np.array_equal(on_screen, surface_pixels())
    print(f"\nframe {frame_hw[1]}x{frame_hw[0]} -> {rect[2]}x{rect[3]}: first present (scale + flip) {new_ms:.1f} ms")


def test_frame_none_repeats_the_last_frame_and_blackout_is_black(display, xserver):
    display.present(None)
    assert not surface_pixels().any()  # nothing shown yet: black
    display.present(frame(quadrants(360, 640)))
    display.present(None)  # no new frame: the last one again
    assert_letterboxed(window_pixels(xserver, (640, 360)), (0, 0, 640, 360))
    display.present(frame(quadrants(360, 640)), blackout=True)
    assert not surface_pixels().any()
    assert not window_pixels(xserver, (640, 360)).any()
    display.present(None)  # blackout off: the frame is back
    assert_letterboxed(surface_pixels(), (0, 0, 640, 360))


def test_hud_draws_in_its_corner_and_leaves_the_frame(display, xserver):
    f = frame(np.full((360, 640, 3), 90, np.uint8))
    display.present(f)
    plain = window_pixels(xserver, (640, 360))
    lines = hud.hud_lines(
        engine_fps=12.5,
        display_fps=60,
        latency_ms=80,
        vsync=True,
        scene=1,
        scene_count=4,
        queued=2,
        bpm=120,
        bar_phase=0.3,
        activity={"MIDI": True, "OSC": False},
        controls=[hud.ControlView("zoom", 0.5, knob=0.2)],
        warnings=["reload refused"],
    )
    levels = hud.hud_levels({"bass": 0.7, "hats": 0.1, "beat": 1.0})
    display.present(f, hud_lines=lines, hud_levels=levels)
    shown = window_pixels(xserver, (640, 360))
    changed = np.any(shown != plain, axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed[:60, :200].sum() > 500, "no HUD text in the top left corner"
    assert xs.min() >= 8 and ys.min() >= 8 and xs.max() < 640 - 8, "the HUD left its panel at the top left"
    assert np.array_equal(shown[ys.max() + 1 :], plain[ys.max() + 1 :]), "the frame below the HUD changed"
    assert np.array_equal(shown[:, xs.max() + 1 :], plain[:, xs.max() + 1 :]), "the frame beside the HUD changed"
    warning = np.all(np.abs(shown.astype(int) - hud.WARNING) < 40, axis=-1)
    assert warning.any(), "warnings are not drawn in the warning colour"


def test_hud_cost_at_1280x720():
    """Prints what the HUD costs per frame at 1280x720 (text changing every frame, bars following)."""
    target = pygame.Surface((1280, 720))
    target.fill((40, 40, 40))
    h = hud.Hud()
    names = {f"band{i}": 0.0 for i in range(6)}
    try:
        times = []
        for i in range(300):
            lines = hud.hud_lines(
                engine_fps=10 + i % 7 * 0.3,
                display_fps=59 + i % 3,
                latency_ms=70 + i % 11,
                vsync=True,
                scene=i // 100,
                scene_count=3,
                bpm=128.0,
                bar_phase=(i % 60) / 60,
                activity={"MIDI": i % 2 == 0, "OSC": False},
                controls=[hud.ControlView("zoom", i / 300)],
            )
            levels = hud.hud_levels({k: (i * (j + 1) % 50) / 50 for j, k in enumerate(names)})
            started = time.perf_counter()
            h.draw(target, lines, levels)
            times.append(time.perf_counter() - started)
    finally:
        h.close()
    times = np.array(times[1:]) * 1e3
    print(f"\nHUD draw at 1280x720: mean {times.mean():.3f} ms, 99th percentile {np.percentile(times, 99):.3f} ms")


def test_keys_become_actions(display):
    presses = [
        (pygame.K_RIGHT, 0),
        (pygame.K_SPACE, 0),
        (pygame.K_LEFT, 0),
        (pygame.K_1, 0),
        (pygame.K_9, 0),
        (pygame.K_KP3, 0),
        (pygame.K_4, pygame.KMOD_LSHIFT),
        (pygame.K_b, 0),
        (pygame.K_f, 0),
        (pygame.K_h, 0),
        (pygame.K_F11, 0),
        (pygame.K_t, 0),
        (pygame.K_d, 0),
        (pygame.K_z, 0),
        (pygame.K_ESCAPE, 0),
        (pygame.K_q, 0),
    ]
    for key, mod in presses:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=mod, unicode="", scancode=0))
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert display.poll() == [
        act.NextScene(),
        act.NextScene(),
        act.PreviousScene(),
        act.JumpScene(0),
        act.JumpScene(8),
        act.JumpScene(2),
        act.QueueScene(3),
        act.Blackout(),
        act.Freeze(),
        act.ToggleHud(),
        act.ToggleFullscreen(),
        act.TapTempo(),
        act.Downbeat(),
        act.Quit(),
        act.Quit(),
        act.Quit(),
    ]
    assert display.poll() == []


def test_timed_keys_carry_the_show_clock():
    assert key_action(pygame.K_t, clock=lambda: 12.5) == act.TapTempo(12.5)
    assert key_action(pygame.K_d, clock=lambda: 3.0) == act.Downbeat(3.0)
    assert key_action(pygame.K_x) is None


def test_l_picks_the_control_to_learn():
    assert key_action(pygame.K_l) == act.LearnNext(1)
    assert key_action(pygame.K_l, pygame.KMOD_LSHIFT) == act.LearnNext(-1)


def test_hud_marks_the_control_being_learned():
    lines = hud.control_lines([hud.ControlView("zoom", 0.5), hud.ControlView("hue", 0.3, learning=True)])
    assert lines[0] == hud.HudLine("zoom 0.5")
    assert lines[1].text.startswith("> hue 0.3  LEARN: move a knob") and lines[1].warning


def test_window_resize_draws_at_the_new_size(display, xserver):
    sdl_window().size = (800, 450)
    deadline = time.monotonic() + 5
    while display.size != (800, 450) and time.monotonic() < deadline:
        display.poll()  # the resize event arrives from the X server
    assert display.size == (800, 450)
    display.present(frame(quadrants(200, 400)))
    assert_letterboxed(window_pixels(xserver, (800, 450)), (0, 25, 800, 400))


def test_fullscreen_fills_the_monitor_and_toggles_back(display, xserver):
    assert display.toggle_fullscreen()
    assert display.fullscreen and display.size == DESKTOP
    display.present(frame(quadrants(300, 300)))
    assert_letterboxed(screenshot(xserver), (280, 0, 720, 720))
    assert display.toggle_fullscreen()
    assert not display.fullscreen and display.size == (640, 360)
    assert pygame.display.get_window_size() == (640, 360)


def x_geometry(xserver):
    """(x, y, width, height) of the window as the X server has it (xwininfo), not as SDL believes it is."""
    out = subprocess.run(
        ["xwininfo", "-id", str(pygame.display.get_wm_info()["window"]), "-display", xserver],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    field = dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line and "xwininfo" not in line)
    return tuple(int(field[name]) for name in ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height"))


def test_fullscreen_without_a_window_manager_covers_the_screen_and_goes_back(display, xserver):
    """Xvfb has no window manager: nothing but vj moves the window to the monitor's origin for fullscreen."""
    sdl_window().position = (300, 200)  # where a performer left the window
    assert x_geometry(xserver) == (300, 200, 640, 360)
    assert display.toggle_fullscreen()
    assert x_geometry(xserver) == (0, 0) + DESKTOP
    display.present(frame(quadrants(300, 300)), hud_lines=[hud.HudLine("hud")])
    assert_letterboxed(screenshot(xserver)[:, 200:], (80, 0, 720, 720))  # right of the HUD: the whole frame
    assert display.toggle_fullscreen()
    assert x_geometry(xserver) == (300, 200, 640, 360)


def test_fullscreen_at_start(xserver):
    with Display((640, 360), fullscreen=True, display_index=0) as d:
        assert d.size == DESKTOP and x_geometry(xserver) == (0, 0) + DESKTOP
    assert not pygame.display.get_init()


def test_blend_fades_from_the_previous_frame_over_the_engine_interval(xserver):
    now = [0.0]
    with Display((640, 360), blend=True, timer=lambda: now[0]) as d:
        red = frame(np.full((90, 160, 3), RED, np.uint8), 0, made_at=10.0)
        blue = frame(np.full((90, 160, 3), BLUE, np.uint8), 1, made_at=10.5)
        for i in range(30):  # a 60 Hz display showing the red frame
            now[0] = i / 60
            d.present(red)
        now[0] = 0.5
        d.present(blue)  # the engine's next frame, 0.5 s after the red one
        assert d.engine_interval == pytest.approx(0.5)
        assert tuple(surface_pixels()[180, 320]) == RED
        now[0] = 0.75
        d.present(None)
        r, g, b = surface_pixels()[180, 320]
        assert abs(int(r) - 128) < 8 and g == 0 and abs(int(b) - 128) < 8
        now[0] = 1.0
        d.present(None)
        assert tuple(surface_pixels()[180, 320]) == BLUE


def test_without_blend_a_new_frame_shows_at_once(display):
    display.present(frame(np.full((90, 160, 3), RED, np.uint8), 0, 0.0))
    display.present(frame(np.full((90, 160, 3), BLUE, np.uint8), 1, 0.5))
    assert tuple(surface_pixels()[180, 320]) == BLUE


def test_presents_are_paced_to_max_fps_without_vsync(display):
    display.present(None)
    due = display.next_present_in()
    assert (due == 0.0) if display.vsync else (0.0 < due <= 1.0 / display.max_fps)


def test_fps_is_measured(display):
    for _ in range(10):
        display.present(None)
    assert display.fps > 0
    print(f"\ndisplay fps on Xvfb: {display.fps:.0f} (vsync {display.vsync})")


def test_a_bad_frame_is_logged_and_the_last_one_kept(display, caplog):
    display.present(frame(quadrants(360, 640)))
    display.present(frame(np.zeros((360, 640), np.float32), 1))
    assert_letterboxed(surface_pixels(), (0, 0, 640, 360))
    assert "expected (height, width, 3) uint8" in caplog.text


def test_display_index_out_of_range_is_one_line(xserver):
    with pytest.raises(DisplayError) as err:
        Display((640, 360), fullscreen=True, display_index=1)
    message = str(err.value)
    assert "\n" not in message
    assert "display 1 does not exist" in message and "0: 1280x720" in message
    assert not pygame.display.get_init()


@pytest.mark.parametrize("size", [(0, 360), (640.5, 360), "640x360", (640,)])
def test_bad_size_is_one_line(size):
    with pytest.raises(DisplayError, match="window size must be two positive whole numbers"):
        Display(size)


@pytest.mark.parametrize("driver", ["x11", None])
def test_no_display_says_so(xserver, monkeypatch, driver):
    """No DISPLAY: with the x11 driver SDL fails; left to choose, SDL falls back to drawing nowhere."""
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if driver is None:
        monkeypatch.delenv("SDL_VIDEODRIVER")
    with pytest.raises(DisplayError) as err:
        Display((640, 360))
    message = str(err.value)
    assert "\n" not in message and message.startswith("no display")
    assert "DISPLAY" in message and "--windowed" in message
    assert not pygame.display.get_init()


def test_close_quits_pygame_display(xserver):
    d = Display((320, 240))
    d.present(frame(quadrants(240, 320)), hud_lines=[hud.HudLine("hi")])
    d.close()
    assert not pygame.display.get_init()
    assert not pygame.font.get_init()
    d.close()  # twice is fine
    assert d.poll() == []


# -- HUD content (no display needed) ---------------------------------------------------------------------------
def test_hud_lines_content():
    lines = hud.hud_lines(
        engine_fps=12.34,
        display_fps=59.7,
        latency_ms=83.2,
        vsync=False,
        scene=0,
        scene_count=3,
        queued=2,
        bpm=128,
        bar_phase=0.55,
        beats_per_bar=4,
        activity={"MIDI": True, "OSC": False},
        controls=[hud.ControlView("zoom", 0.5), hud.ControlView("hue", 0.3, knob=0.8)],
        warnings=["reload refused: x"],
        blackout=True,
        notes=["reloaded show.yaml"],
    )
    texts = [line.text for line in lines]
    assert texts == [
        "engine 12.3 fps  display 60 fps no vsync  latency 83 ms",
        "scene 1/3  next 3",
        "128.0 BPM  [. . X .]",
        "MIDI [*]  OSC [ ]",
        "BLACKOUT",
        "zoom 0.5",
        "hue 0.3  knob 0.8 down",
        "reloaded show.yaml",
        "! reload refused: x",
    ]
    assert [line.warning for line in lines] == [False, False, False, False, True, False, True, False, True]
    assert hud.hud_lines()[0].text == "engine - fps  display - fps  latency - ms"


def test_hud_levels_clamp_and_skip():
    levels = hud.hud_levels(
        {"bass": 1.7, "hats": -0.2, "mid": 0.25, "bass_prev": 0.3, "bpm": 120, "beat_count": 7, "odd": float("nan")}
    )
    assert levels == [
        hud.HudLevel("bass", 1.0),
        hud.HudLevel("hats", 0.0),
        hud.HudLevel("mid", 0.25),
        hud.HudLevel("odd", 0.0),
    ]


def test_hud_refreshes_text_a_few_times_a_second():
    now = [0.0]
    h = hud.Hud(refresh=0.2, clock=lambda: now[0])
    target = pygame.Surface((640, 360))
    try:
        h.draw(target, [hud.HudLine("a 1")])
        first = pygame.surfarray.array3d(target)
        target.fill(BLACK)
        now[0] = 0.1
        h.draw(target, [hud.HudLine("a 2")])  # within the refresh interval: the old text stays
        assert np.array_equal(pygame.surfarray.array3d(target), first)
        target.fill(BLACK)
        now[0] = 0.25
        h.draw(target, [hud.HudLine("a 2")])
        assert not np.array_equal(pygame.surfarray.array3d(target), first)
    finally:
        h.close()


def test_readmes_keys_table_is_the_one_the_show_prints():
    from conftest import ROOT
    from vj.live.keys import KEY_HELP, start_line

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Keys") :].split("\n\n")[1].splitlines()[2:]
    rows = [tuple(cell.strip() for cell in line.strip("|").split(" | ")) for line in table]
    assert rows == [(keys, long) for keys, _, long in KEY_HELP]
    assert all(f"{keys} {short}" in start_line() for keys, short, _ in KEY_HELP)
