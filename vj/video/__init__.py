"""Video in and out: sources (files, streams, cameras, NDI) that feed the show beside the audio, and outputs (MP4,
SRT/UDP streams, NDI, a virtual camera, Spout, Syphon) that take the frames it shows."""
