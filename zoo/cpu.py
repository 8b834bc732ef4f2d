"""What this CPU's int8 kernels are worth: its kind, read from ``/proc/cpuinfo`` (no heavy imports).

ONNX Runtime's int8 matrix kernels on x86 multiply uint8 activations by int8 weights (U8S8).
With AVX-512 VNNI, AVX-VNNI or AMX the products accumulate exactly in int32 and int8 runs well
ahead of float32. With AVX2 alone the kernel (``vpmaddubsw``) adds pairs of products into int16
and saturates, so U8S8 both loses accuracy and runs no faster than float32; ORT's documented
remedy is ``reduce_range`` (7-bit weights), which keeps every pair sum inside int16.

Kinds, best first: ``amx``, ``vnni`` (avx512_vnni or avx_vnni), ``avx2``, ``other`` (no AVX2, not
x86, or no ``/proc/cpuinfo``). ``ZOO_CPU_KIND`` overrides the detection, e.g. to build an int8
file for the CPUs that will run it rather than the one that builds it.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

KINDS = ("amx", "vnni", "avx2", "other")
ENV = "ZOO_CPU_KIND"
# The flags that decide the kind, recorded with int8 figures (the rest of the list says nothing here).
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
# Kinds whose int8 dot products are exact (int32 accumulation): a file checked on one behaves the same on the other.
EXACT = frozenset({"amx", "vnni"})


@dataclass(frozen=True)
class Cpu:
    """The CPU as int8 sees it: ``kind`` (one of ``KINDS``), its model name and the deciding flags."""

    kind: str
    name: str
    flags: tuple[str, ...]
    detected: str  # the kind /proc/cpuinfo gives; differs from ``kind`` under ZOO_CPU_KIND

    @property
    def fast_int8(self) -> bool:
        """Whether int8 can be expected to beat float32 here (exact int8 dot products in hardware)."""
        return self.kind in EXACT

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "name": self.name, "flags": list(self.flags)}
        if self.detected != self.kind:
            out["detected"] = self.detected
        return out


def kind_of(flags: set[str] | frozenset[str]) -> str:
    """The int8 kind a set of ``/proc/cpuinfo`` flags gives."""
    if "amx_int8" in flags and "amx_tile" in flags:
        return "amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx2" in flags:
        return "avx2"
    return "other"


def covers(validated: str, running: str) -> bool:
    """Whether int8 figures measured on a CPU of kind ``validated`` hold on one of kind ``running``."""
    return validated == running or (validated in EXACT and running in EXACT)


def detect(cpuinfo: str | None = None, override: str | None = None) -> Cpu:
    """This CPU (or the one ``cpuinfo``, a ``/proc/cpuinfo`` text, describes); ``override`` (else
    ``$ZOO_CPU_KIND``) replaces the detected kind."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:  # not Linux, or /proc not mounted
            cpuinfo = ""
    name, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        field, _, value = line.partition(":")
        field = field.strip()
        if field == "model name" and value.strip():
            name = value.strip()
        elif field == "flags":
            flags = set(value.split())
            break  # every core lists the same flags
    detected = kind_of(flags)
    wanted = override if override is not None else os.environ.get(ENV) or None
    if wanted is not None and wanted not in KINDS:
        raise UserError(f"{ENV}={wanted!r} is not a CPU kind: use one of {', '.join(KINDS)}")
    return Cpu(kind=wanted or detected, name=name, flags=tuple(f for f in FLAGS if f in flags), detected=detected)
