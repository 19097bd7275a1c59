"""The per-frame variable environment that expressions read: t, frame, inputs and NAME_prev."""


class FrameVariables:
    """Builds each frame's {name: value} dict; NAME_prev is the previous frame's value (0 at first)."""

    def __init__(self, names):
        self.names = tuple(names)
        self._previous = dict.fromkeys(self.names, 0.0)

    def frame(self, t, frame, values):
        env = {"t": float(t), "frame": float(frame)}
        for name in self.names:
            env[name] = values.get(name, 0.0)
            env[f"{name}_prev"] = self._previous[name]
        self._previous = {name: env[name] for name in self.names}
        return env
