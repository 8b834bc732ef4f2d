"""A source for ``zoo bulk`` tests: tiny models that export in a moment, and misbehaving ones.

``ok1``..``ok3``: a small MLP each (a different width, so a different file). ``raises``: its
build raises. ``flaky``: fails the first time in a folder (``ZOO_TEST_BULK_DIR``), works
after. ``hangs``: sleeps for ever in build. ``hog``: allocates memory in 64 MiB steps (up to
``ZOO_TEST_BULK_HOG_MB``, default 6144) and then sleeps, so only a memory limit ends it.
``ZOO_TEST_BULK_BUILD_S``: seconds every ``ok`` model's build waits (default 0), so that store
tests can have writers whose exports surely overlap without paying for a real model.
"""

import os
import time
from pathlib import Path

from zoo import BuiltModel, ModelSpec, Preprocessing, Source, hookimpl

MODELS = ("ok1", "ok2", "ok3", "raises", "flaky", "hangs", "hog")


class BulkSource(Source):
    name = "bulk"
    example = "ok1"

    def models(self, pattern=None):
        from zoo.source import match

        return match(MODELS, pattern)

    def resolve(self, name):
        return ModelSpec(self.name, name, self.default_weights) if name in MODELS else None

    def build(self, spec, recipe):
        if spec.name == "raises":
            raise RuntimeError("this model cannot be built")
        if spec.name == "flaky":
            marker = Path(os.environ["ZOO_TEST_BULK_DIR"]) / "flaky-tried"
            if not marker.exists():
                marker.write_text("once")
                raise RuntimeError("flaky: first try fails")
        if spec.name == "hangs":
            while True:
                time.sleep(1)
        if spec.name == "hog":
            held = []
            for _ in range(int(os.environ.get("ZOO_TEST_BULK_HOG_MB", "6144")) // 64):
                held.append(bytearray(64 << 20))  # zero-filled: every page is touched
                time.sleep(0.02)
            while True:
                time.sleep(1)
        time.sleep(float(os.environ.get("ZOO_TEST_BULK_BUILD_S", "0")))
        import torch
        from torch import nn

        torch.manual_seed(0)
        width = {"ok1": 4, "ok2": 6, "ok3": 8, "flaky": 5}[spec.name]
        module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, width), nn.ReLU(), nn.Linear(width, 2))
        preprocessing = Preprocessing(input_size=(3, 8, 8), resize=8, crop=(8, 8))
        return BuiltModel(module=module.eval(), preprocessing=preprocessing, labels=["no", "yes"])


@hookimpl
def zoo_register_sources(register):
    register(BulkSource())
