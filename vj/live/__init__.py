"""The live show: the same chain as a render with a wall clock, live inputs and a display."""
