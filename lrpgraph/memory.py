"""Memory budgets: how many samples of an analysis fit in a given amount of memory.

A method's peak memory grows linearly in the batch: ``peak(b) = fixed + b * per_sample``.
:func:`analysis_cost` measures both once per (method, input shape) by running the
method on two small batches and reading the device's peak:

- on a GPU, ``tf.config.experimental.get_memory_info(device)["peak"]`` after
  ``reset_memory_stats`` (exact: TensorFlow's allocator);
- on the CPU, TensorFlow's allocator statistics when the process was started with
  ``TF_CPU_ALLOCATOR_USE_BFC=true`` (exact), else the process's peak resident set
  size (``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs``
  after ``malloc_trim``; Linux), above the resident size before the call: coarse,
  since the C heap and TensorFlow keep freed memory for reuse.

:func:`fit_batch_size` then gives the largest batch whose predicted peak fits a
budget (``Method.analyze(x, batch_size="auto", max_memory="8GB")``, and the dataset
runner's ``max_memory``).  Budgets are bytes or strings such as ``"512MB"``,
``"8GB"`` or ``"1.5GiB"``.  The prediction is approximate: where TensorFlow runs
several ops at once, the peak depends on the order it picks them in (on a 2-core CPU
+-20% between runs of the same batch), so leave headroom in the budget.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

__all__ = ["Cost", "parse_memory", "available_memory", "analysis_cost", "fit_batch_size", "peak_of",
           "MemoryBudgetError"]

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class MemoryBudgetError(MemoryError):
    """Not even one sample fits the memory budget."""


@dataclass(frozen=True)
class Cost:
    """Peak memory of one analysis: ``fixed + batch * per_sample`` bytes."""

    per_sample: float
    fixed: float
    device: str

    def peak(self, batch):
        return self.fixed + batch * self.per_sample


def parse_memory(budget):
    """Bytes for ``budget``: an int/float of bytes or a string like "8GB", "512 MiB"."""
    if isinstance(budget, (int, float, np.integer, np.floating)) and not isinstance(budget, bool):
        value = float(budget)
    elif isinstance(budget, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", budget)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"cannot read the memory budget {budget!r}: write e.g. '8GB', '512MB', '1.5GiB' or "
                             "a number of bytes")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise TypeError(f"a memory budget is a number of bytes or a string like '8GB', got {budget!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"the memory budget must be positive, got {budget!r}")
    return value


def _gpu():
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else None


def _proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def available_memory():
    """Free memory of the device analyses run on: the GPU's free memory (total minus
    TensorFlow's current use), else the host's MemAvailable (Linux)."""
    dev = _gpu()
    if dev is not None:
        info = tf.config.experimental.get_memory_info(dev.replace("/device:", ""))
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        total = details.get("memory_limit") or None
        if total:
            return float(total - info["current"])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(int(line.split()[1]) * 1024)
    except OSError:
        pass
    raise OSError("cannot tell how much memory is free on this machine; pass max_memory='8GB' (or another "
                  "budget) explicitly")


def _trim_heap():
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``), so that the
    resident size counts live memory and a run's allocations show in its peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measurement is only coarser
        pass


def _allocator_device():
    """The device whose TensorFlow allocator keeps statistics: the GPU, or the CPU when
    TF_CPU_ALLOCATOR_USE_BFC=true was set before TensorFlow started (None otherwise)."""
    dev = _gpu()
    if dev is not None:
        return dev.replace("/device:", "")
    try:
        return "CPU:0" if tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0 else None
    except (ValueError, RuntimeError):
        return None


def peak_of(fn):
    """(result of ``fn()``, peak bytes used during it above the usage before it).

    Exact where TensorFlow's allocator keeps statistics (a GPU; the CPU with
    ``TF_CPU_ALLOCATOR_USE_BFC=true``); otherwise the process's peak resident size
    (Linux), which the C heap's caching makes coarse for small batches."""
    name = _allocator_device()
    if name is not None:
        tf.config.experimental.reset_memory_stats(name)
        before = tf.config.experimental.get_memory_info(name)["current"]
        out = fn()
        return out, float(tf.config.experimental.get_memory_info(name)["peak"] - before)
    if not os.path.exists("/proc/self/clear_refs"):
        raise OSError("measuring the CPU's peak memory needs Linux (/proc/self/clear_refs); pass batch_size as "
                      "an int instead of 'auto'")
    gc.collect()
    _trim_heap()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _proc_status("VmRSS")
    out = fn()
    return out, float(max(_proc_status("VmHWM") - before, 0))


def analysis_cost(run, sample, small=(4, 16)):
    """Measure ``run(batch)`` (a function of a list of arrays) on two small batches made
    by repeating ``sample`` (a list of one-sample arrays); returns a :class:`Cost`.
    A warm-up call first, so tracing is not counted.  The batches are powers of two:
    TensorFlow's allocator rounds large requests up by bins, so that sizes in between
    read the same peak as the next power of two.  They start at 4, not 2: with oneDNN
    off (TensorFlow's default on CPUs without AVX512_VNNI) some kernels hold a
    fixed-size workspace that sets the peak of batches 2 and 4 alike (13.8 MB on the
    test CNN), so a slope read from batch 2 came out 40% low."""
    b1, b2 = small
    batch = lambda b: [np.repeat(a, b, axis=0) for a in sample]  # noqa: E731
    run(batch(1))
    peaks = []
    for b in (b1, b2, b1, b2):  # twice each: the smaller reading is the steady state
        peaks.append(peak_of(lambda b=b: run(batch(b)))[1])
    p1, p2 = min(peaks[0], peaks[2]), min(peaks[1], peaks[3])
    per_sample = max((p2 - p1) / (b2 - b1), 1.0)
    fixed = max(p1 - b1 * per_sample, 0.0)
    return Cost(per_sample, fixed, "GPU" if _gpu() else "CPU")



def fit_batch_size(cost, budget, n=None):
    """The largest batch whose predicted peak fits ``budget`` (bytes or "8GB"), at most
    ``n``; MemoryBudgetError when not even one sample fits."""
    budget = parse_memory(budget)
    fits = int((budget - cost.fixed) // cost.per_sample)
    if fits < 1:
        raise MemoryBudgetError(
            f"one sample needs about {_fmt(cost.peak(1))} ({_fmt(cost.fixed)} fixed + {_fmt(cost.per_sample)} per "
            f"sample, measured on the {cost.device}) but the budget is {_fmt(budget)}: raise max_memory, or use "
            "a smaller input or a cheaper method")
    return fits if n is None else min(fits, n)


def _fmt(b):
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= f:
            return f"{b / f:.1f} {unit}"
    return f"{b:.0f} B"
