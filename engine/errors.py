"""The engine's domain errors, raised with the message the user will read."""


class EngineError(Exception):
    """The frame engine cannot do what was asked (bad settings, out of memory, ...)."""


class ModelError(EngineError):
    """A model that cannot be built or loaded; the message says how to get it."""
