"""The GPU frame engine: streaming img2img with weighted prompt conditioning. Knows nothing about audio."""
