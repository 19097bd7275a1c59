"""Frames produced on the engine's own thread into a small bounded queue."""

import queue
import threading

_DONE = object()


class FrameStream:
    """Renders `requests` on a worker thread; iterate to take (request, frame) in order.

    The queue holds `depth` frames, so the engine runs ahead of the consumer by at most that
    many; an engine error is re-raised in the consumer. `close()` stops the worker.
    """

    def __init__(self, engine, requests, depth=4):
        self._engine = engine
        self._requests = requests
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vj-engine", daemon=True)
        self._thread.start()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)  # wakes to notice close(); not a synchronisation sleep
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for request in self._requests:
                if self._stop.is_set() or not self._put((request, self._engine.render(request))):
                    return
        except BaseException as exc:  # handed to the consumer, which reports it
            self._put(exc)
            return
        self._put(_DONE)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self._stop.set()
        self._thread.join()
