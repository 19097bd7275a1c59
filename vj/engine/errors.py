"""The engine's domain errors, raised with the message the user will read."""

import contextlib

from vj.errors import VjError


class EngineError(VjError):
    """The frame engine cannot do what was asked (bad settings, out of memory, ...)."""


class ModelError(EngineError):
    """A model that cannot be built or loaded; the message says how to get it."""


class DeviceUnavailable(EngineError):
    """A --device that torch cannot use on this machine; the message names the devices it can use."""


class OutOfMemory(EngineError):
    """The device ran out of memory for a frame; a live show catches this type and renders smaller."""


def _allocation_failed(exc):
    """Whether `exc` is a device or host allocation failure. torch raises OutOfMemoryError for CUDA and MPS, but a
    plain RuntimeError from its CPU allocator: that one is known by its text, the only type-less case."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(exc)


@contextlib.contextmanager
def out_of_memory(message):
    """Run the block; an allocation failure in it becomes OutOfMemory(message)."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if _allocation_failed(exc):
            raise OutOfMemory(message) from None
        raise
