"""Where the engine runs: the one place that turns `--device` and `--dtype` into a torch device and dtype, and the
device-generic forms of the few calls that differ between NVIDIA's CUDA, Apple's MPS (Metal) and the CPU.

`auto` picks CUDA, then MPS, then the CPU. The default dtype is float16 on CUDA and float32 on MPS and the CPU:
on MPS float16 is not yet safe for diffusers' SD UNet and VAE (frames of NaN, black or crashes were reported
with some macOS and torch versions, and diffusers' own Apple silicon guide runs them in float32), so it is a
choice (`--dtype float16`), not the default. Everything else in the engine asks its tensors' or components'
device; nothing assumes CUDA.
"""

import re

import torch

from vj.engine.errors import DeviceUnavailable, ModelError

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")  # and cuda:N, the N-th CUDA GPU
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def is_device_name(text):
    """Whether `text` is a --device value: auto, cpu, cuda, cuda:N or mps."""
    return text in DEVICE_NAMES or _CUDA_INDEX.fullmatch(text) is not None


def cuda_available():
    return torch.cuda.is_available()


def mps_available():
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_devices():
    """The --device values torch can use on this machine, best first (what `auto` picks is the first)."""
    names = []
    if cuda_available():
        count = torch.cuda.device_count()
        names += ["cuda"] if count <= 1 else [f"cuda:{i}" for i in range(count)]
    if mps_available():
        names.append("mps")
    return names + ["cpu"]


def describe(name):
    """A --device value as `vj devices` lists it: the GPU's name and memory, or what the CPU is."""
    if name.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(name))
        return f"{name}: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    if name == "mps":
        return "mps: Apple GPU (Metal), memory shared with the CPU"
    return f"cpu: {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def _unavailable(name, missing):
    here = available_devices()
    return DeviceUnavailable(
        f"--device {name} was asked for, but {missing}; available here: {', '.join(here)} "
        f"(--device auto picks {here[0]})"
    )


def pick_device(name="auto"):
    """The torch device for a --device value (or a torch.device): `auto` is CUDA, then MPS, then the CPU.
    DeviceUnavailable, naming the devices there are, when the one asked for is not here."""
    name = str(name)
    if name == "auto":
        if cuda_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not mps_available():
            built = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built()
            why = (
                "this machine is no Apple silicon Mac with macOS 12.3 or later"
                if built
                else "this torch build has no MPS support (it needs an arm64 macOS build)"
            )
            raise _unavailable(name, f"torch sees no Apple GPU (MPS): {why}")
        return torch.device("mps")
    index = _CUDA_INDEX.fullmatch(name)
    if name == "cuda" or index:
        if not cuda_available():
            raise _unavailable(name, "torch sees no CUDA GPU")
        count = torch.cuda.device_count()
        if index and int(index.group(1)) >= count:
            raise _unavailable(
                name,
                f"torch sees {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})",
            )
        return torch.device(name)
    raise DeviceUnavailable(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")


def default_dtype(device):
    """The dtype `--dtype auto` gives on `device`: float16 on CUDA; float32 on MPS (see above) and the CPU."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def resolve_dtype(dtype, device):
    """The torch dtype for a --dtype value on `device`; 'auto' is default_dtype(device)."""
    if dtype == "auto":
        return default_dtype(device)
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype '{dtype}'; use auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def synchronize(device):
    """Wait for the work queued on `device` (timings); nothing to wait for on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def to_device(host, device):
    """A host tensor copied to `device`. To a CUDA GPU it goes through pinned memory without blocking (a pageable
    copy waits for the GPU's queue); pinning needs CUDA, so elsewhere it is a plain copy (none on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)
