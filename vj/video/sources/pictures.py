"""What sources do to a decoded picture: resize it to the show's size the way pytti's Video Source mode does (PIL,
LANCZOS: a render's file, NDI), or in one step with FFmpeg's Lanczos scaler (live PyAV sources: about a third of
the cost), and say a library's error in one line."""

import numpy as np
from PIL import Image


def fit(image, width, height):
    """uint8 height x width x 3 (read-only) from a PIL image of any mode and size: converted to RGB and resized
    with LANCZOS, as pytti does (`Image.fromarray(frame).convert("RGB").resize(shape, Image.LANCZOS)`)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.LANCZOS)
    rgb = np.asarray(image)
    rgb.flags.writeable = False  # one frame may go to several consumers: none may change it
    return rgb


def rgb_of_av(frame):
    """(width, height) -> uint8 height x width x 3 (read-only) of a PyAV video frame: conversion and Lanczos
    resize in one pass of FFmpeg's scaler."""

    def rgb(width, height):
        out = frame.reformat(width=width, height=height, format="rgb24", interpolation="LANCZOS").to_ndarray()
        out.flags.writeable = False
        return out

    return rgb


def rgb_of_array(array):
    """(width, height) -> the same for an RGB(A) array, through fit (PIL, LANCZOS)."""
    return lambda width, height: fit(Image.fromarray(np.ascontiguousarray(array[:, :, :3])), width, height)


def one_line(exc):
    """An exception's message on one line (FFmpeg and NDI messages may span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
