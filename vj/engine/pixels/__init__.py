"""pytti's pixel image models (Unlimited and Limited Palette) and the engine that optimizes them frame by frame."""
