"""The live show's keys, written down once: `vj live` prints the short form at the start, README's Keys table is
the long form (a test holds the two together), and `vj.live.display.key_action` maps pygame's keys to actions."""

# (keys, short form for the start-up line, README's description)
KEY_HELP = (
    ("Right, Space", "next scene", "next scene (the queued one if any)"),
    ("Left", "previous", "previous scene"),
    ("1-9", "jump", "jump to scene 1-9"),
    ("Shift+1-9", "queue", 'queue scene 1-9 for "next"'),
    ("B / F", "blackout / freeze", "blackout / freeze on-off"),
    ("H", "HUD", "HUD on-off"),
    (
        "C",
        "control maps",
        "control-map preview on-off: thumbnails of what the ControlNets follow, at the bottom left of the window "
        "(with or without the HUD; never in outputs or recordings)",
    ),
    (
        "F11",
        "fullscreen",
        "fullscreen on-off (fullscreen covers the monitor from its origin, with or without a window "
        "manager; back in the window: its old size and place)",
    ),
    ("T", "tap tempo", "tap tempo"),
    ("D", "downbeat", "downbeat: this beat is the first of the bar"),
    (
        "L / Shift+L",
        "MIDI learn",
        "MIDI learn: pick the next / previous control (the HUD marks it `> NAME ... LEARN`); "
        "move a knob to bind it; past the last control, learning stops",
    ),
    ("Esc, Q, closing the window", "quit", "quit"),
)


def start_line():
    """The keys as `vj live` lists them when the show is up."""
    return "keys: " + ", ".join(f"{keys} {short}" for keys, short, _ in KEY_HELP) + " (README: Keys)"
