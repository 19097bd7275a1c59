"""Names of the musical variables: per-filter hits and the global beat variables."""

# Global variables every preset has (0 until there is audio with a beat, or a fixed `bpm`).
MUSICAL_VARIABLES = ("beat", "beat_phase", "bar_phase", "bpm", "beat_count")
HIT_SUFFIX = "_hit"


def hit_name(variable_name):
    """The onset variable of a filter with `hit: true`."""
    return variable_name + HIT_SUFFIX
