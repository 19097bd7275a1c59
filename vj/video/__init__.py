"""Video out of vj: the MP4 writer (H.264 + the track as AAC)."""
