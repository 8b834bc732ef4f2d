"""A source that breaks three rules the conformance kit checks: it imports torch at import
time, its catalogue ignores the pattern, and an unknown name fails with a bare KeyError
instead of UnknownModelError."""

import torch  # noqa: F401 (the point: a heavy import at registration)

from zoo import BuiltModel, ModelSpec, Preprocessing, Source, hookimpl

MODELS = {"linear": lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))}


class SloppySource(Source):
    name = "sloppy"

    def models(self, pattern=None):
        return sorted(MODELS)

    def resolve(self, name):
        return ModelSpec(self.name, name) if name in MODELS else None

    def build(self, spec, recipe):
        module = MODELS[spec.name]()
        return BuiltModel(module=module.eval(), preprocessing=Preprocessing(input_size=(3, 8, 8), resize=8,
                                                                            crop=(8, 8)))


@hookimpl
def zoo_register_sources(register):
    register(SloppySource())
