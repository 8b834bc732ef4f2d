"""A plugin whose code raises a bare exception where ``ZOO_TEST_FAULT`` says.

``ZOO_TEST_FAULT`` names one of: models, resolve, spec, build (source ``faulty``), fetch
(source ``faultyready``), command (``zoo faulty-cmd``). zoo must report each as this
plugin's failure, never as its own internal error.
"""

import os

from zoo.plugin import BuiltModel, ModelSpec, Preprocessing, Source, UnknownModelError, hookimpl, match

MODELS = ("x",)


def fault(method):
    if os.environ.get("ZOO_TEST_FAULT") == method:
        raise RuntimeError(f"faulty {method}")


class Faulty(Source):
    name = "faulty"

    def models(self, pattern=None):
        fault("models")
        return match(MODELS, pattern)

    def resolve(self, name):
        fault("resolve")
        return None

    def spec(self, name, weights, options):
        fault("spec")
        return super().spec(name, weights, options)

    def build(self, spec, recipe):
        fault("build")
        if spec.name not in MODELS:
            raise UnknownModelError(f"faulty has no model {spec.name!r}")
        from torch import nn

        return BuiltModel(module=nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval(),
                          preprocessing=Preprocessing(input_size=(3, 2, 2), resize=2, crop=(2, 2)))


class FaultyReady(Source):
    name = "faultyready"

    def models(self, pattern=None):
        return match(MODELS, pattern)

    def resolve(self, name):
        return ModelSpec(self.name, name) if name in MODELS else None

    def fetch(self, spec, recipe, directory, progress=None):
        fault("fetch")
        raise UnknownModelError(f"faultyready has no file for {spec.name!r}")


def faulty_cmd():
    """Print ok, unless told to fail."""
    fault("command")
    print("ok")


@hookimpl
def zoo_register_sources(register):
    register(Faulty())
    register(FaultyReady())


@hookimpl
def zoo_register_commands(register):
    register(faulty_cmd)
