"""`vj prerender PRESET --ray [ADDRESS]`: the preset's latent-blend transitions computed on a Ray cluster's workers.

Transitions are independent: each worker loads the diffusion model once and computes the pairs it is handed. What is
shared is the Ray object store: a worker returns each transition's cache entry (its key and arrays) to the driver,
which writes it into this machine's transition cache; a worker also keeps it in its own node's cache. A second run
finds every pair in the workers' caches (and the driver's cache was filled by the first).
"""

import sys
import time

from tqdm import tqdm

from vj.cluster.connect import connect, disconnect, ray_module, worker_resources, worker_threads
from vj.cluster.pool import LOST, Pool
from vj.cluster.workers import TransitionComputer


def main(args):
    from vj.commands.prerender import pairs_to_prerender
    from vj.engine.transitions.cache import TransitionCache

    ray = ray_module()
    preset, overrides, pairs = pairs_to_prerender(args)
    if not pairs:
        return 0
    resources = connect(args.ray, args.workers)
    try:
        options, capacity = worker_resources(args.device, resources)
        workers = min(capacity, args.workers or capacity, len(pairs))
        threads = worker_threads(args.ray, options, workers)
        cache = TransitionCache()
        started = time.perf_counter()
        arguments = (str(args.preset), overrides, args.device, args.dtype, args.compile, threads)
        cached = 0
        progress = tqdm(total=len(pairs), unit="transition", desc="prerender (cluster)", file=sys.stderr)
        pool = Pool(ray, TransitionComputer, arguments, options, workers, lambda w, pair: w.compute.remote(*pair))
        try:
            for _, found in pool.results(pairs):
                if found is LOST:
                    continue
                key, arrays, hit = found
                cache.put(key, arrays)
                cached += hit
                progress.update(1)
        finally:
            pool.close()
            progress.close()
    finally:
        disconnect()
    where = cache.folder or "in memory only: the cache folder cannot be written, see the warning"
    print(
        f"{len(pairs)} transitions on {workers} workers: {len(pairs) - cached} computed, {cached} already in the "
        f"workers' caches; this machine's cache ({where}) holds them all, in {time.perf_counter() - started:.1f} s"
    )
    return 0
