"""The two small languages of presets: pytti's scene DSL (with token groups) and safe numeric expressions."""
