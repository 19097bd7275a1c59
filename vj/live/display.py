"""The show's window: the newest engine frame scaled to fit (aspect kept, black bars), the HUD over it, keys as actions.

pygame allows one window per process, and it lives on the main thread. `present` never waits for the engine: it
draws whatever frame it is given (or repeats the last one, or fades toward it with `blend`), then flips, waiting
for the vertical blank when vsync is on.

`poll` returns the keys (vj.live.keys.KEY_HELP) as actions; the show applies them.
"""

import importlib.util
import logging
import os
import time
from collections import deque

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402  (after the variable that silences pygame's banner)

from vj.live.controls import actions as act  # noqa: E402
from vj.throttled_log import RateLimitedLog  # noqa: E402
from vj.live.hud import Hud  # noqa: E402
from vj.errors import VjError

log = logging.getLogger(__name__)

BLACK = (0, 0, 0)
FPS_WINDOW = 1.0  # seconds of presents that `fps` averages over
BLEND_MIN_RATIO = 1.5  # crossfade only when engine frames come at least this many display frames apart
CENTERED_ON = 0x2FFF0000  # SDL_WINDOWPOS_CENTERED_DISPLAY(n) is this | n

KEY_ACTIONS = {
    pygame.K_RIGHT: act.NextScene,
    pygame.K_SPACE: act.NextScene,
    pygame.K_LEFT: act.PreviousScene,
    pygame.K_b: act.Blackout,
    pygame.K_f: act.Freeze,
    pygame.K_h: act.ToggleHud,
    pygame.K_c: act.ToggleControlPreview,
    pygame.K_F11: act.ToggleFullscreen,
    pygame.K_ESCAPE: act.Quit,
    pygame.K_q: act.Quit,
}
TIMED_KEYS = {pygame.K_t: act.TapTempo, pygame.K_d: act.Downbeat}
DIGITS = {
    **{getattr(pygame, f"K_{k}"): k for k in range(1, 10)},
    **{getattr(pygame, f"K_KP{k}"): k for k in range(1, 10)},
}


def _load_triton_first():
    """Load triton (with CUDA torch) before SDL makes a GL context: Mesa's OpenGL and triton each carry their own
    LLVM, and importing triton after the context exists (torch does it lazily, e.g. when a model is built after
    a reload) crashes the process."""
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


class DisplayError(VjError):
    """The window cannot be opened: no display, a monitor that does not exist, or a mode SDL refuses."""


def key_action(key, mod=0, clock=None):
    """The action for a key press (None for other keys); `clock()` stamps taps and downbeats (None: when applied)."""
    if key in DIGITS:
        index = DIGITS[key] - 1
        return act.QueueScene(index) if mod & pygame.KMOD_SHIFT else act.JumpScene(index)
    if key in TIMED_KEYS:
        return TIMED_KEYS[key](None if clock is None else clock())
    if key == pygame.K_l:
        return act.LearnNext(-1 if mod & pygame.KMOD_SHIFT else 1)
    make = KEY_ACTIONS.get(key)
    return None if make is None else make()


def fit_rect(frame_size, window_size):
    """The largest rect of `frame_size`'s aspect inside `window_size`, centred (letterbox or pillarbox)."""
    fw, fh = frame_size
    ww, wh = window_size
    scale = min(ww / fw, wh / fh)
    w, h = min(ww, max(1, round(fw * scale))), min(wh, max(1, round(fh * scale)))
    return pygame.Rect((ww - w) // 2, (wh - h) // 2, w, h)


def no_display(why):
    """The one-line error for a machine without a usable screen."""
    return (
        f"no display: SDL cannot open a screen ({why}); run from a desktop session or set DISPLAY to an X "
        f"server (e.g. DISPLAY=:0), and try --windowed if fullscreen is the problem"
    )


def describe_monitors(sizes):
    """'0: 1920x1080, 1: 1280x720' for error messages."""
    return ", ".join(f"{i}: {w}x{h}" for i, (w, h) in enumerate(sizes))


class Display:
    """A pygame window (or fullscreen on monitor `display_index`) that presents ShownFrames with an optional HUD.

    `vsync` is what was obtained (pygame needs SCALED for it; refused -> False). `fps` is the measured present
    rate. Without vsync, `next_present_in` paces presents to `max_fps` (a new frame may come sooner). `blend`
    crossfades between engine frames when the engine is slower than the display. `clock` (e.g. the show clock) stamps
    TapTempo and Downbeat keys; `timer` (monotonic seconds) times presents and fades, replaceable in tests.
    """

    shows_previews = True  # draws the control-map thumbnails `present` is given (the show asks; --headless does not)

    def __init__(
        self,
        size=(1280, 720),
        fullscreen=False,
        display_index=0,
        vsync=True,
        title="vj",
        blend=False,
        max_fps=60,
        clock=None,
        timer=time.monotonic,
    ):
        w, h = size if isinstance(size, (tuple, list)) and len(size) == 2 else (None, None)
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            raise DisplayError(f"window size must be two positive whole numbers of pixels, not {size!r}")
        self.fullscreen = bool(fullscreen)
        self.display_index = display_index
        self.blend = blend
        self.max_fps = max_fps
        self.vsync = False
        self.shown = None  # the ShownFrame on screen (None: none yet)
        self.shown_at = None  # timer() (time.monotonic) of the present that first showed it
        self.flipped_at = None  # time.monotonic() of the latest flip
        self.engine_interval = None  # smoothed seconds between the engine frames seen (from made_at)
        self._want_vsync = vsync
        self._windowed_size = (w, h)
        self._windowed_position = None  # where the window was before fullscreen, to go back to
        self._clock = clock
        self._timer = timer
        self._hud = Hud()
        self._window = None
        self._presents = deque()
        self._bad_frames = RateLimitedLog(log, "display frame")
        self._reset_frame_state()
        _load_triton_first()
        try:
            pygame.display.init()
        except pygame.error as exc:
            raise DisplayError(no_display(str(exc))) from None
        # With no screen SDL falls back to drivers that draw nowhere; only use them when asked for by name.
        driver = pygame.display.get_driver()
        if driver in ("offscreen", "dummy") and os.environ.get("SDL_VIDEODRIVER", "").lower() != driver:
            pygame.display.quit()
            raise DisplayError(no_display(f"only SDL's {driver} driver, which shows nothing"))
        try:
            sizes = pygame.display.get_desktop_sizes()
            if not (isinstance(display_index, int) and 0 <= display_index < len(sizes)):
                raise DisplayError(f"display {display_index} does not exist; monitors: {describe_monitors(sizes)}")
            pygame.display.set_caption(title)
            self._open()
        except BaseException:
            pygame.display.quit()
            raise

    # -- window --------------------------------------------------------------------------------------------
    def _open(self):
        """(Re)create the window for the current mode; SCALED is what lets pygame give vsync."""
        if self.fullscreen:
            size = pygame.display.get_desktop_sizes()[self.display_index]
            flags = pygame.FULLSCREEN | pygame.SCALED
        else:
            size = self._windowed_size
            flags = pygame.RESIZABLE | pygame.SCALED
        mode = f"{size[0]}x{size[1]} {'fullscreen' if self.fullscreen else 'window'} on display {self.display_index}"
        screen = None
        if self._want_vsync:
            try:
                screen = pygame.display.set_mode(size, flags, display=self.display_index, vsync=1)
            except pygame.error as exc:
                log.info("vsync refused for the %s (%s): presenting without it", mode, exc)
        self.vsync = screen is not None
        if screen is None:
            try:
                screen = pygame.display.set_mode(size, flags, display=self.display_index)
            except pygame.error as exc:
                raise DisplayError(f"cannot open a {mode}: {exc}") from None
        self._screen = screen
        if not self.fullscreen:
            self._place_window(size, self._windowed_position)
            self._windowed_position = None  # used once: later resizes keep where the performer moves it
        self._reset_frame_state()

    def _sdl_window(self):
        """pygame's current SDL window (a new one after each set_mode)."""
        from pygame._sdl2.video import Window

        # Keep the wrapper: SDL keeps a pointer to it, which pygame's events read (a freed one crashes).
        self._window = Window.from_display_module()
        return self._window

    def _place_window(self, size, position=None):
        """pygame's SCALED window grows to the largest whole multiple of the size that fits the desktop: undo it;
        and put it back at `position` (x, y) when given."""
        try:
            window = self._sdl_window()
            if tuple(window.size) != tuple(size):
                window.size = size
            if position is not None:
                window.position = position
        except (ImportError, AttributeError, pygame.error) as exc:
            log.info("could not set the window to %dx%d at %s (%s); keeping pygame's", size[0], size[1], position, exc)

    def _leave_window(self):
        """Before fullscreen: remember where the window is, and cover the monitor with it. pygame makes the
        fullscreen window where the old one was, and only a window manager moves it to the monitor's origin;
        without one (a bare X server, a kiosk) the picture and the HUD would run off the screen."""
        try:
            window = self._sdl_window()
            self._windowed_position = tuple(window.position)
            window.size = pygame.display.get_desktop_sizes()[self.display_index]
            # centred on the monitor at the monitor's size: its origin (SDL has no call that gives the origin)
            window.position = (CENTERED_ON | self.display_index, CENTERED_ON | self.display_index)
        except (ImportError, AttributeError, pygame.error) as exc:
            log.info("could not move the window to display %d's origin (%s)", self.display_index, exc)

    def _reset_frame_state(self):
        """Forget the scaled surfaces (new window size or mode); the next present scales the frame again."""
        self._fit_key = None
        self._rect = None
        self._scaled = None  # reused destination of smoothscale, in the window's pixel format
        self._current = None  # the current frame, scaled to self._rect
        self._previous = None  # window-sized picture faded from (blend)
        self._fade_from = None
        self._last_frame = None

    @property
    def size(self):
        """The drawable size in pixels."""
        return self._screen.get_size()

    def describe(self):
        """'window 640x360 on display 0, vsync': what `vj live` says at the start."""
        w, h = self.size
        mode = "fullscreen" if self.fullscreen else "window"
        return f"{mode} {w}x{h} on display {self.display_index}, {'vsync' if self.vsync else 'no vsync'}"

    def toggle_fullscreen(self):
        """Switch between fullscreen (at the monitor's origin) and the window (back at its size and place); returns
        whether it worked (a refused mode keeps the old one)."""
        if not self.fullscreen:
            self._leave_window()
        self.fullscreen = not self.fullscreen
        try:
            self._open()
            return True
        except DisplayError as exc:
            log.warning("%s; staying %s", exc, "windowed" if self.fullscreen else "fullscreen")
            self.fullscreen = not self.fullscreen
            self._open()
            return False

    def _follow_window(self):
        """After a resize, draw at the window's new size (SCALED would otherwise stretch the old one)."""
        actual = tuple(pygame.display.get_window_size())
        if actual != self._screen.get_size() and min(actual) > 0:
            self._windowed_size = actual
            self._open()

    def poll(self):
        """Handle window events (resize) and return the actions of the keys pressed and of closing the window."""
        if not pygame.display.get_init():
            return []
        actions, resized = [], False
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                actions.append(act.Quit())
            elif event.type == pygame.KEYDOWN:
                action = key_action(event.key, getattr(event, "mod", 0), self._clock)
                if action is not None:
                    actions.append(action)
            elif event.type in (pygame.VIDEORESIZE, pygame.WINDOWSIZECHANGED):
                resized = True
        if resized and not self.fullscreen:
            self._follow_window()
        return actions

    def close(self):
        """Close the window and quit pygame's display (and the HUD's fonts); safe to call twice."""
        self._hud.close()
        if pygame.display.get_init():
            pygame.display.quit()
        self._window = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- frames --------------------------------------------------------------------------------------------
    @property
    def fps(self):
        """Presents per second over the last second or so (0 before two presents)."""
        t = self._presents
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def present(self, frame=None, blackout=False, hud_lines=None, hud_levels=None, previews=()):
        """Draw `frame` (a ShownFrame; None: the last one, or black before any) or black, the control-map
        `previews` ((h, w, 3) uint8 thumbnails) at the bottom left and the HUD at the top left if given, flip."""
        screen = self._screen
        now = self._timer()
        if frame is not None and frame is not self._last_frame:
            self._take(frame, now)
        if blackout or self._current is None:
            screen.fill(BLACK)
        else:
            self._draw_frame(now)
        if previews:
            self._hud.draw_previews(screen, previews)
        if hud_lines or hud_levels:
            self._hud.draw(screen, hud_lines or (), hud_levels or ())
        pygame.display.flip()
        self.flipped_at = time.monotonic()  # the picture reaches the screen (at the next refresh with vsync)
        self._count_present(self._timer())

    def next_present_in(self):
        """Seconds until the next present is due: 0 with vsync (the flip waits for the refresh), else what is left
        of 1/max_fps since the last flip. The show waits this long for a new engine frame, at most."""
        if self.vsync or not self.max_fps or self.flipped_at is None:
            return 0.0
        return max(0.0, self.flipped_at + 1.0 / self.max_fps - time.monotonic())

    def _count_present(self, t):
        self._presents.append(t)
        while self._presents and t - self._presents[0] > FPS_WINDOW:
            self._presents.popleft()

    def _take(self, frame, now):
        """Scale a new engine frame into the window's format; with blend, keep what is on screen to fade from."""
        rgb = frame.rgb
        if not (
            isinstance(rgb, np.ndarray)
            and rgb.ndim == 3
            and rgb.shape[2] == 3
            and rgb.dtype == np.uint8
            and rgb.shape[0] > 0
            and rgb.shape[1] > 0
        ):
            self._bad_frames.drop(
                f"frame {frame.index}: {getattr(rgb, 'shape', None)} "
                f"{getattr(rgb, 'dtype', type(rgb).__name__)}, expected (height, width, 3) uint8"
            )
            return
        fade = self.blend and self._current is not None
        if fade:
            self._keep_screen_picture(now)
        if self._last_frame is not None:
            dt = frame.made_at - self._last_frame.made_at
            if 0 < dt < 2.0:
                self.engine_interval = dt if self.engine_interval is None else 0.7 * self.engine_interval + 0.3 * dt
        period = 1.0 / self.fps if self.fps > 0 else 1.0 / (self.max_fps or 60)
        slow = self.engine_interval is not None and self.engine_interval > BLEND_MIN_RATIO * period
        self._fade_from = now if fade and slow else None
        h, w = rgb.shape[:2]
        key = ((w, h), self._screen.get_size())
        if key != self._fit_key:
            self._fit_key, self._rect = key, fit_rect(*key)
            self._scaled = None if self._rect.size == (w, h) else pygame.Surface(self._rect.size, 0, self._screen)
        # convert() to the window's 32-bit format first: smoothscale is 3x faster on 32-bit surfaces.
        src = pygame.image.frombuffer(np.ascontiguousarray(rgb), (w, h), "RGB").convert(self._screen)
        if self._scaled is None:
            self._current = src
        else:
            pygame.transform.smoothscale(src, self._rect.size, self._scaled)
            self._current = self._scaled
        self._last_frame = frame
        self.shown, self.shown_at = frame, now

    def _fade_alpha(self, now):
        """0..1 progress of the running crossfade, or None when there is none."""
        if self._fade_from is None or not self.blend or self.engine_interval is None:
            return None
        progress = (now - self._fade_from) / self.engine_interval
        return progress if progress < 1.0 else None

    def _keep_screen_picture(self, now):
        """Copy the frame layer as it is on screen now (mid-fade included) into `_previous`, to fade from."""
        size = self._screen.get_size()
        if self._previous is None or self._previous.get_size() != size:
            self._previous = pygame.Surface(size, 0, self._screen)
            fading = None
        else:
            fading = self._fade_alpha(now)
        if fading is None:
            self._previous.fill(BLACK)
            self._current.set_alpha(None)
        else:
            self._current.set_alpha(round(255 * fading))
        self._previous.blit(self._current, self._rect)
        self._current.set_alpha(None)

    def _draw_frame(self, now):
        screen, rect = self._screen, self._rect
        alpha = self._fade_alpha(now)
        if alpha is None:
            self._fade_from = None
            # Only the bars need black; the frame covers the rest.
            if rect.size != screen.get_size():
                screen.fill(BLACK)
            screen.blit(self._current, rect)
            return
        screen.blit(self._previous, (0, 0))
        self._current.set_alpha(round(255 * alpha))
        screen.blit(self._current, rect)
        self._current.set_alpha(None)
