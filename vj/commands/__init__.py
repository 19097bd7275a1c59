"""The commands that drive a show session or a preset: render, analyze, morph, prerender, bench, devices."""
