"""The frame engine: everything on tensors, by capability (diffusion, guidance, pixels, transitions).

It knows nothing of presets, audio or shows: it imports only itself and vj.errors."""
