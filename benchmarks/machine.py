"""What this machine's CPU can do: its name, TensorFlow's kernels on it, its nominal peak and a
measured single-thread SGEMM rate; for the benchmarks' headers and throughput lines.

    python benchmarks/machine.py          # print the CPU, its nominal peak and the SGEMM rate

The nominal peak is ``cores x clock x FLOP per cycle``: ``cores`` the physical cores
(``/proc/cpuinfo``'s ``core id``s; a vCPU that is a hyper-thread adds none), ``clock`` the
``cpu MHz`` the kernel reports (a VM reports its TSC, the base clock; boost clocks go above it,
which is why a measured rate can exceed the nominal peak), and FLOP per cycle from the SIMD the
CPU has: two FMA units of 8 float32 lanes with AVX2 + FMA (32: AMD Zen 2-4, Intel Haswell to
Ice Lake client), two of 16 with AVX-512 (64: Intel server cores; counted as 32 on a CPU that
lists ``avx512f`` but has one FMA unit, which /proc/cpuinfo cannot tell), 8 with AVX alone, 4
with SSE. The SGEMM rate is a float32 ``matmul`` of two 1024 x 1024 matrices in TensorFlow with
one intra-op thread, the best of 20 by the process's CPU time (so that other processes on a
shared machine, which take the core away, do not count), in a subprocess (so the caller's thread
settings do not matter): what one core delivers on the densest kernel there is, the practical
ceiling of one core's convolutions.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys


def cpu_info():
    """``{"name", "cores", "threads", "mhz", "flags"}`` from /proc/cpuinfo (what it has)."""
    info = {"name": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": os.cpu_count(), "mhz": None, "flags": set()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    cores, threads = set(), 0
    physical = core = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            threads += 1
        elif key == "model name":
            info["name"] = value
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
        elif key == "flags" and not info["flags"]:
            info["flags"] = set(value.split())
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    info["threads"] = threads or info["threads"]
    info["cores"] = len(cores) or info["threads"]
    return info


def flops_per_cycle(flags):
    """float32 FLOP per cycle per core from the SIMD ``flags`` (see the module docstring)."""
    if "avx512f" in flags:
        return 64
    if "avx2" in flags and "fma" in flags:
        return 32
    if "avx" in flags:
        return 16
    return 8


def nominal_peak(info=None):
    """``(GFLOP/s, how)``: the float32 nominal peak of all physical cores (module docstring)."""
    info = info or cpu_info()
    per_cycle = flops_per_cycle(info["flags"])
    if not info["mhz"]:
        return None, "no clock in /proc/cpuinfo"
    peak = info["cores"] * info["mhz"] / 1e3 * per_cycle
    simd = ("AVX-512" if "avx512f" in info["flags"] else
            "AVX2 + FMA" if {"avx2", "fma"} <= info["flags"] else "AVX/SSE")
    return peak, (f"{info['cores']} cores x {info['mhz'] / 1e3:.2f} GHz x {per_cycle} float32 "
                  f"FLOP/cycle ({simd})")


_SGEMM = """
import time, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
n = 1024
a = tf.random.normal((n, n)); b = tf.random.normal((n, n))
f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
f().numpy()
def timed(clock):
    t0 = clock()
    f().numpy()
    return clock() - t0
# The CPU time of this one-thread process: what the core delivers while it runs, which another
# process's load on a shared machine does not lower (the wall time it does).
best = min(timed(time.process_time) for _ in range(20))
print(2 * n ** 3 / best / 1e9)
"""


def sgemm_gflops():
    """The single-thread float32 SGEMM rate in GFLOP/s (module docstring), or None."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        out = subprocess.run([sys.executable, "-c", _SGEMM], capture_output=True, text=True,
                             env=env, timeout=300)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def throughput_line(images_per_second, forward_flops, training=True):
    """One markdown line: images/s, GFLOP/s (3 x forward FLOPs per trained image: forward,
    and a backward of about twice the forward), and their share of the nominal peak and of
    the measured SGEMM rate times the cores."""
    info = cpu_info()
    factor = 3 if training else 1
    gflops = images_per_second * factor * forward_flops / 1e9
    peak, how = nominal_peak(info)
    sgemm = sgemm_gflops()
    parts = [f"{images_per_second:.0f} images/s = {gflops:.1f} GFLOP/s "
             f"({factor} x {forward_flops / 1e6:.1f} MFLOP per image)"]
    if peak:
        parts.append(f"{gflops / peak:.0%} of the nominal peak {peak:.0f} GFLOP/s ({how})")
    if sgemm:
        parts.append(f"{gflops / (sgemm * info['cores']):.0%} of {info['cores']} x the measured "
                     f"single-thread SGEMM rate {sgemm:.0f} GFLOP/s")
    return "; ".join(parts)


if __name__ == "__main__":
    info = cpu_info()
    peak, how = nominal_peak(info)
    print(f"CPU: {info['name']}, {info['cores']} physical cores, {info['threads']} threads")
    print(f"nominal float32 peak: {peak:.0f} GFLOP/s ({how})" if peak else f"peak: {how}")
    rate = sgemm_gflops()
    print(f"single-thread SGEMM (TensorFlow, 1024^3, best of 20 by CPU time): "
          f"{rate:.1f} GFLOP/s" if rate else "SGEMM: not measured")
