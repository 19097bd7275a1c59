"""Presets: the keys (each defined once), the schema, YAML loading with lines, and the documents made from them."""
