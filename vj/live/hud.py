"""The HUD: pure functions that turn show data into text lines and level bars, and a `Hud` that draws them cheaply.

The builders take plain values (numbers, names, dicts) so the show, tests and other outputs can use them without
pygame; `Hud.draw` renders each distinct string once (cached) and refreshes the text a few times a second, while
the level bars follow every frame. `Hud.draw_previews` puts the control-map thumbnails at the bottom left.
"""

import math
import time
from dataclasses import dataclass

TEXT = (230, 230, 230)
WARNING = (255, 176, 32)
BAR = (70, 200, 120)
BAR_BACK = (60, 60, 60)
PANEL = (0, 0, 0, 150)  # translucent black behind the HUD
MARGIN = 8  # pixels between the window corner and the panel, and inside the panel
NOT_LEVELS = ("bpm", "beat_count")  # musical variables that are not 0..1
PREVIEW_BORDER = (230, 230, 230)  # the thin frame around each control-map thumbnail
PREVIEW_HEIGHT = 1 / 3  # the control-map preview takes at most this share of the window's height


@dataclass(frozen=True)
class HudLine:
    """One line of HUD text; `warning` draws it in the warning colour."""

    text: str
    warning: bool = False


@dataclass(frozen=True)
class HudLevel:
    """One level bar: a variable's name and its value clamped to 0..1."""

    name: str
    value: float


@dataclass(frozen=True)
class ControlView:
    """A control as the HUD shows it; `knob` is the hardware position's value while it waits for pickup."""

    name: str
    value: float
    knob: float | None = None
    learning: bool = False  # MIDI learn: the next knob moved binds to this control


def status_line(engine_fps=None, display_fps=None, latency_ms=None, vsync=None):
    """'engine 12.3 fps  display 60 fps vsync  latency 85 ms' (unknown parts as '-')."""
    engine = "-" if engine_fps is None else f"{engine_fps:.1f}"
    shown = "-" if display_fps is None else f"{display_fps:.0f}"
    sync = "" if vsync is None else (" vsync" if vsync else " no vsync")
    latency = "-" if latency_ms is None else f"{latency_ms:.0f}"
    return HudLine(f"engine {engine} fps  display {shown} fps{sync}  latency {latency} ms")


def scene_line(scene, count=None, queued=None):
    """'scene 2/5  next 3' from 0-based indexes, shown 1-based as on the keys."""
    total = "" if count is None else f"/{count}"
    nxt = "" if queued is None else f"  next {queued + 1}"
    return HudLine(f"scene {scene + 1}{total}{nxt}")


def beat_line(bpm=None, bar_phase=None, beats_per_bar=4):
    """'128.0 BPM  [. X . .]': the tempo and which beat of the bar it is."""
    tempo = "- BPM" if bpm is None or not math.isfinite(bpm) else f"{bpm:.1f} BPM"
    if bar_phase is None or not math.isfinite(bar_phase) or beats_per_bar < 1:
        return HudLine(tempo)
    at = int(min(max(bar_phase, 0.0), 0.999999) * beats_per_bar)
    marks = " ".join("X" if i == at else "." for i in range(beats_per_bar))
    return HudLine(f"{tempo}  [{marks}]")


def activity_line(active):
    """'MIDI [*]  OSC [ ]' from {input name: active recently}."""
    return HudLine("  ".join(f"{name} [{'*' if on else ' '}]" for name, on in active.items()))


def control_lines(controls):
    """One line per control, 'name 0.5'; a knob waiting for pickup adds 'knob 0.2 up' (turn it up to take over);
    the control being learned is marked '> name 0.5  LEARN: move a knob (L: next)'."""
    lines = []
    for c in controls:
        text = f"{'> ' if c.learning else ''}{c.name} {c.value:.3g}"
        if c.knob is not None:
            text += f"  knob {c.knob:.3g} {'up' if c.knob < c.value else 'down'}"
        if c.learning:
            text += "  LEARN: move a knob (L: next, Shift+L: previous)"
        lines.append(HudLine(text, warning=c.knob is not None or c.learning))
    return lines


def hud_lines(
    *,
    engine_fps=None,
    display_fps=None,
    latency_ms=None,
    vsync=None,
    scene=None,
    scene_count=None,
    queued=None,
    bpm=None,
    bar_phase=None,
    beats_per_bar=4,
    activity=None,
    controls=(),
    warnings=(),
    blackout=False,
    frozen=False,
    transition=None,
    notes=(),
):
    """Every HUD line in order: status, scene, transition, beat, input activity, BLACKOUT/FROZEN, controls,
    notes (passing confirmations such as 'reloaded show.yaml'), warnings."""
    lines = [status_line(engine_fps, display_fps, latency_ms, vsync)]
    if scene is not None:
        lines.append(scene_line(scene, scene_count, queued))
    if transition:
        lines.append(HudLine(transition, warning="not ready" in transition))
    lines.append(beat_line(bpm, bar_phase, beats_per_bar))
    if activity:
        lines.append(activity_line(activity))
    states = [name for name, on in (("BLACKOUT", blackout), ("FROZEN", frozen)) if on]
    if states:
        lines.append(HudLine("  ".join(states), warning=True))
    lines.extend(control_lines(controls))
    lines.extend(HudLine(note) for note in notes)
    lines.extend(HudLine(f"! {w}", warning=True) for w in warnings)
    return lines


def hud_levels(values, skip=NOT_LEVELS):
    """A level bar per audio variable in `values` (name -> value), clamped to 0..1; `NAME_prev` and `skip` left out."""
    levels = []
    for name, value in values.items():
        if name in skip or name.endswith("_prev"):
            continue
        v = float(value)
        levels.append(HudLevel(name, min(max(v, 0.0), 1.0) if math.isfinite(v) else 0.0))
    return levels


class Hud:
    """Draws HUD lines and level bars in a translucent panel at the top left of a pygame surface.

    Text is re-laid out at most every `refresh` seconds (values change every frame; reading them faster is
    useless) and each distinct string is rendered once and cached; the bars are redrawn every call.
    """

    CACHE_LIMIT = 512

    def __init__(self, refresh=0.2, clock=time.monotonic):
        self.refresh = refresh
        self._clock = clock
        self._fonts = {}
        self._texts = {}
        self._panels = {}
        self._laid_out_at = -math.inf
        self._key = None
        self._layout = None
        self._font_inited = False
        self._previews = None  # (thumbnails, window size, their panel or None): built once per frame's thumbnails

    def _font(self, size):
        import pygame

        if not pygame.font.get_init():
            pygame.font.init()
            self._font_inited = True
        font = self._fonts.get(size)
        if font is None:
            font = self._fonts[size] = pygame.font.Font(None, size)
        return font

    def _text(self, font, size, text, colour):
        key = (size, text, colour)
        surf = self._texts.get(key)
        if surf is None:
            if len(self._texts) >= self.CACHE_LIMIT:
                self._texts.clear()
            surf = self._texts[key] = font.render(text, True, colour)
        return surf

    def _lay_out(self, height, lines, levels):
        """Text surfaces and positions for `lines` and the level rows, and the panel size."""
        size = max(14, height // 40)
        font = self._font(size)
        step = font.get_linesize()
        texts, y, width = [], MARGIN, 0
        for line in lines:
            surf = self._text(font, size, line.text, WARNING if line.warning else TEXT)
            texts.append((surf, (MARGIN, y)))
            width, y = max(width, surf.get_width()), y + step
        bar_w, bar_h = 8 * size, max(4, size // 2)
        names = [self._text(font, size, lv.name, TEXT) for lv in levels]
        name_w = max((s.get_width() for s in names), default=0)
        bars = []
        for lv, name in zip(levels, names):
            texts.append((name, (MARGIN, y)))
            value = self._text(font, size, f"{lv.value:.2f}", TEXT)
            x_bar = MARGIN + name_w + size // 2
            texts.append((value, (x_bar + bar_w + size // 2, y)))
            bars.append((x_bar, y + (step - bar_h) // 2))
            width = max(width, x_bar + bar_w + size // 2 + value.get_width() - MARGIN)
            y += step
        return texts, bars, (bar_w, bar_h), (width + 2 * MARGIN, y + MARGIN - (step - size) // 2)

    def draw(self, surface, lines=(), levels=()):
        """Draw `lines` (HudLine) and `levels` (HudLevel) at the top left of `surface`; returns the panel's Rect."""
        import pygame

        now = self._clock()
        # Height and level names change the layout: redo it now. New text or level values wait for `refresh`.
        key = (
            surface.get_height(),
            tuple(lv.name for lv in levels),
            tuple(lines),
            tuple(round(lv.value, 2) for lv in levels),
        )
        if (
            self._layout is None
            or key[:2] != self._key[:2]
            or (key != self._key and now - self._laid_out_at >= self.refresh)
        ):
            self._layout = self._lay_out(surface.get_height(), lines, levels)
            self._key, self._laid_out_at = key, now
        texts, bars, (bar_w, bar_h), panel_size = self._layout
        panel = self._panels.get(panel_size)
        if panel is None:
            if len(self._panels) >= 16:
                self._panels.clear()
            panel = self._panels[panel_size] = pygame.Surface(panel_size, pygame.SRCALPHA)
            panel.fill(PANEL)
        origin = (MARGIN, MARGIN)
        surface.blit(panel, origin)
        surface.blits([(s, (origin[0] + x, origin[1] + y)) for s, (x, y) in texts], doreturn=False)
        for (x, y), lv in zip(bars, levels):
            x, y = origin[0] + x, origin[1] + y
            surface.fill(BAR_BACK, (x, y, bar_w, bar_h))
            surface.fill(BAR, (x, y, round(bar_w * lv.value), bar_h))
        return pygame.Rect(origin, panel_size)

    def draw_previews(self, surface, previews):
        """Draw control-map thumbnails ((h, w, 3) uint8 arrays) side by side at the bottom left of `surface`, each in
        a thin frame under its label 'control N', on a translucent panel, shrunk to fit the window; returns the
        panel's Rect (None: the window is too small for them). The panel is built once per set of thumbnails."""
        import pygame

        size = surface.get_size()
        if self._previews is None or self._previews[0] is not previews or self._previews[1] != size:
            self._previews = (previews, size, self._preview_panel(size, previews))
        panel = self._previews[2]
        if panel is None:
            return None
        origin = (MARGIN, size[1] - MARGIN - panel.get_height())
        surface.blit(panel, origin)
        return pygame.Rect(origin, panel.get_size())

    def _preview_panel(self, size, previews):
        """The labelled, framed thumbnails on a translucent panel, scaled to fit `size`; None if they cannot."""
        import numpy as np
        import pygame

        width, height = size
        font_size = max(14, height // 40)
        font = self._font(font_size)
        labels = [self._text(font, font_size, f"control {i + 1}", TEXT) for i in range(len(previews))]
        label_h = font.get_linesize()
        n = len(previews)
        room_w = width - 2 * MARGIN - (n + 1) * MARGIN - 2 * n  # the window's margins, the gaps, the frames
        room_h = height * PREVIEW_HEIGHT - 2 * MARGIN - label_h - 2
        scale = min(1.0, room_w / sum(p.shape[1] for p in previews), room_h / max(p.shape[0] for p in previews))
        if scale <= 0:
            return None
        thumbs = []
        for p in previews:
            h, w = p.shape[:2]
            thumb = pygame.image.frombuffer(np.ascontiguousarray(p), (w, h), "RGB")
            fit = (max(1, round(w * scale)), max(1, round(h * scale)))
            thumbs.append(pygame.transform.smoothscale(thumb, fit) if fit != (w, h) else thumb.copy())
        cells = [max(t.get_width() + 2, label.get_width()) for t, label in zip(thumbs, labels)]
        panel_size = (
            MARGIN + sum(c + MARGIN for c in cells),
            2 * MARGIN + label_h + 2 + max(t.get_height() for t in thumbs),
        )
        panel = pygame.Surface(panel_size, pygame.SRCALPHA)
        panel.fill(PANEL)
        x, y = MARGIN, MARGIN + label_h
        for thumb, label, cell in zip(thumbs, labels, cells):
            panel.blit(label, (x, MARGIN))
            pygame.draw.rect(panel, PREVIEW_BORDER, (x, y, thumb.get_width() + 2, thumb.get_height() + 2), 1)
            panel.blit(thumb, (x + 1, y + 1))
            x += cell + MARGIN
        return panel

    def close(self):
        """Quit pygame.font if this HUD started it."""
        if self._font_inited:
            import pygame

            pygame.font.quit()
            self._font_inited = False
        self._fonts.clear()
        self._texts.clear()
        self._previews = None
