"""Past one machine: `vj render`, `vj replay` and `vj prerender` spread over a Ray cluster (`--ray [ADDRESS]`, the
`ray` extra). The timeline is cut into segments (`segments.py`) that workers render apart (`workers.py`), each
loading the models once; the driver (`render.py`, `prerender.py`) hands out segments, re-runs the segment of a
worker lost mid-way, and writes the frames in order into one MP4 with the track."""
