"""The environment a run measured on: versions, CPU, threads, CUDA devices and flags, git commit."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata

import torch


@functools.cache
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit(path: str | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path or os.getcwd(), capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path or os.getcwd(),
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cuda_info() -> dict:
    if not torch.cuda.is_available():
        return {"cuda_available": False}
    return {
        "cuda_available": True,
        "cuda_version": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cudnn_version": torch.backends.cudnn.version(),
        # TF32 changes float32 matmul results: it is part of what was measured
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def manifest() -> dict:
    """Everything about this process's environment that a timing or an error depends on."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {
            name: _version(name) for name in ("torch", "numpy", "ray", "pandas", "pyarrow", "gradbench")
        },
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        # this process's, not the workers' (each segment's workers say their own)
        "driver_torch_threads": torch.get_num_threads(),
        "driver_omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": git_commit(),
        **cuda_info(),
    }
