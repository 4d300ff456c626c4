"""What a measurement was taken on: the CPU and its int8 instructions, the cores, the library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from opsearch.runtime import physical_cores

# CPU flags that decide which int8 kernels ONNX Runtime can use.
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp", "i8mm")
LIBRARIES = ("opsearch", "onnxruntime", "onnx", "optimum", "optimum-onnx", "transformers", "torch", "optuna",
             "datasets", "evaluate", "numpy", "scikit-learn")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in INT8_FLAGS if flag in present]
    except OSError:
        pass
    return []


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def fingerprint() -> dict:
    """A JSON-ready description of this machine, stored with every study."""
    return {
        "cpu": cpu_model(),
        "int8_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
