"""Joining a Ray cluster, or starting a local one, for `--ray [ADDRESS]`; Ray is an optional extra."""

import os

from vj.errors import VjError

LOCAL = "local"  # `--ray` without an address: a Ray instance on this machine, started and stopped by vj


class ClusterError(VjError):
    """A cluster that cannot be used (Ray missing, an address that does not answer, no worker fits)."""


def ray_module():
    """The `ray` module, or ClusterError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install 'vj[ray]' (or drop --ray to render on this machine)") from None
    return ray


def connect(address, workers=None):
    """Join the cluster at `address` (host:port of a head started with `ray start --head`, or `auto`), or with
    LOCAL start one on this machine with `workers` CPUs for as many workers (default: this machine's cores).
    Returns the cluster's resources ({"CPU": n, "GPU": n, ...})."""
    ray = ray_module()
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        if address == LOCAL:
            ray.init(num_cpus=workers or os.cpu_count() or 1, num_gpus=_local_gpus(), **quiet)
        else:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray instance" if address == LOCAL else f"the Ray cluster at {address}"
        raise ClusterError(f"cannot start or join {where}: {str(exc).splitlines()[0]}") from None
    return ray.cluster_resources()


def _local_gpus():
    """The CUDA GPUs of this machine for a local cluster (0 without torch's CUDA)."""
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def worker_resources(device, resources):
    """What one worker asks of the cluster: a GPU each when rendering on CUDA (or `auto` on a cluster that has
    GPUs), else one CPU; and how many such workers the cluster holds."""
    gpus = int(resources.get("GPU", 0))
    if device.startswith("cuda") or (device == "auto" and gpus):
        if not gpus:
            raise ClusterError(f"--device {device}: the cluster has no GPU; use --device cpu to render on its CPUs")
        return {"num_gpus": 1, "num_cpus": 0}, gpus
    return {"num_cpus": 1}, max(1, int(resources.get("CPU", 1)))


def worker_threads(address, options, workers):
    """torch threads per worker: on a local instance of CPU workers, this machine's cores shared among them; else
    0 (torch's default: the worker has its node's cores or a GPU)."""
    if address == LOCAL and "num_gpus" not in options:
        return max(1, (os.cpu_count() or 1) // workers)
    return 0


def describe(address):
    """The cluster as messages name it."""
    return "a local Ray instance" if address == LOCAL else address


def disconnect():
    """Leave the cluster (a local one stops)."""
    ray = ray_module()
    if ray.is_initialized():
        ray.shutdown()
