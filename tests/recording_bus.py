"""An ActionBus that records what is put, so input tests wait on a condition instead of sleeping."""

import threading

from vj.live.controls.actions import ActionBus

TIMEOUT = 5.0


class RecordingBus(ActionBus):
    """Every (action, source) put is kept in `seen`; the waits wake as soon as a new one arrives."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self._changed = threading.Condition()

    def put(self, action, source="?"):
        super().put(action, source)
        with self._changed:
            self.seen.append((action, source))
            self._changed.notify_all()

    def actions(self):
        return [action for action, _ in self.seen]

    def became(self, predicate, timeout=TIMEOUT):
        """Whether predicate(actions so far) became true within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.actions()), timeout)

    def wait_until(self, predicate, timeout=TIMEOUT):
        """Every action so far, once `predicate(actions)` holds (fails the test after `timeout`)."""
        assert self.became(predicate, timeout), f"only {self.seen}"
        return self.actions()

    def first(self, count):
        """The first `count` actions, once they have arrived."""
        return self.wait_until(lambda actions: len(actions) >= count)[:count]
