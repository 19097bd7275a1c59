"""The driver's side of a cluster job: workers that load their models once, tasks handed to whichever is free, and a
task whose worker is lost handed out again (at most RETRIES times) to a worker started in its place.

Each task is a streaming call (a generator method of the worker, `ray.ObjectRefGenerator`): `Pool.results()` yields
(task, item) as items arrive from any worker, a lost task as (task, LOST) (its items so far must be dropped, it runs
again from its start); an error raised by our own code on a worker is raised here as itself.
"""

import collections

from vj.cluster.connect import ClusterError

RETRIES = 3  # how often one task may lose its worker before the job stops
LOST = object()  # the item that says a task lost its worker and will run again


class Pool:
    """`count` workers of class `cls` (made Ray actors with `options`), each built with `arguments`; `call(worker,
    task)` starts a task's streaming call on a worker."""

    def __init__(self, ray, cls, arguments, options, count, call, on_lost=None):
        self.ray = ray
        self._actor = ray.remote(cls).options(**options)
        self._arguments = arguments
        self._call = call
        self.on_lost = on_lost  # on_lost(task, times): the driver tells the user
        self.workers = [self._start() for _ in range(count)]
        self.facts = self._check(self.workers)  # (pid, count, problem) of each worker, once it is up
        self._idle = list(self.workers)
        self._running = {}  # ObjectRefGenerator -> (worker, task)
        self._lost = collections.Counter()

    def _start(self):
        return self._actor.remote(*self._arguments)

    def _check(self, workers):
        """Wait for the workers' models; a worker that cannot load them stops the job with its one-line reason."""
        facts = self.ray.get([w.ready.remote() for w in workers])
        for _, _, problem in facts:
            if problem:
                raise ClusterError(f"a worker cannot start: {problem}")
        return facts

    def results(self, tasks):
        """(task, item) for every item each task yields, in arrival order; (task, LOST) when its worker is lost."""
        ray = self.ray
        pending = collections.deque(tasks)
        while pending or self._running:
            while pending and self._idle:
                worker, task = self._idle.pop(), pending.popleft()
                self._running[self._call(worker, task)] = (worker, task)
            ready, _ = ray.wait(list(self._running), num_returns=1)
            for stream in ready:
                worker, task = self._running[stream]
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    del self._running[stream]
                    self._idle.append(worker)
                    continue
                except ray.exceptions.RayActorError:
                    del self._running[stream]
                    self._replace(worker)
                    self._lost[task] += 1
                    if self._lost[task] > RETRIES:
                        raise ClusterError(f"{task} lost its worker {RETRIES + 1} times; the job stops") from None
                    if self.on_lost is not None:
                        self.on_lost(task, self._lost[task])
                    pending.appendleft(task)
                    yield task, LOST
                    continue
                except ray.exceptions.RayTaskError as exc:  # our own code's error, raised as itself
                    cause = getattr(exc, "cause", None)
                    raise (cause if isinstance(cause, Exception) else exc) from None
                yield task, item

    def _replace(self, worker):
        """A new worker in place of a lost one (it loads the models again)."""
        self.workers.remove(worker)
        fresh = self._start()
        self._check([fresh])
        self.workers.append(fresh)
        self._idle.append(fresh)

    def close(self):
        """Stop every worker now (a task still running is abandoned with it)."""
        for worker in self.workers:
            self.ray.kill(worker)
        self._running.clear()
