"""The show itself, the same for every command.

The session (models, engines, transitions), the Director's per-frame requests, scene timing, variables and the
engine thread."""
