"""The engine's own thread, one kind for renders and live shows: it steps until stopped or done, and whoever drives
it takes frames without waiting on the engine more than it must.

A render drives it through `FrameStream` (every frame in order, a few ahead, an error ends the stream); a live
show through `vj.live.loop.EngineLoop` (the newest frame into a slot, an error is shown and retried).
"""

import queue
import threading

_DONE = object()


class EngineThread:
    """Calls `step()` on a daemon thread named vj-engine until `step` returns False or `close()`. An exception
    from `step` goes to `on_error(exc)`, which returns whether to carry on."""

    def __init__(self, step, on_error):
        self._step = step
        self._on_error = on_error
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vj-engine", daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                if self._step() is False:
                    return
            except BaseException as exc:  # the thread's owner decides; nothing escapes into threading's hook
                if not self._on_error(exc):
                    return

    def close(self, timeout=None):
        """Stop; with a `timeout`, a frame still rendering after it is abandoned (the thread is a daemon)."""
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class FrameStream:
    """Renders `requests` on the engine thread; iterate to take (request, frame) in order.

    The queue holds `depth` frames, so the engine runs ahead of the consumer by at most that many; an engine
    error is re-raised in the consumer. `close()` stops the worker.
    """

    def __init__(self, engine, requests, depth=4):
        self._engine = engine
        self._requests = iter(requests)
        self._queue = queue.Queue(maxsize=depth)
        self._thread = EngineThread(self._render_next, self._hand_over)
        self._thread.start()

    def _put(self, item):
        while not self._thread.stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)  # wakes to notice close(); not a synchronisation sleep
                return True
            except queue.Full:
                continue
        return False

    def _render_next(self):
        request = next(self._requests, _DONE)
        if request is _DONE:
            self._put(_DONE)
            return False
        return self._put((request, self._engine.render(request)))

    def _hand_over(self, exc):
        self._put(exc)  # the consumer re-raises it
        return False

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self._thread.close()
