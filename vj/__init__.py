"""vj: audio-reactive live VJ performance (audio analysis, expressions, scenes, render, live)."""

__version__ = "0.1.0"
