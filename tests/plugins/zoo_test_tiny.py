"""A well-behaved source with one tiny model, plus the two extension hooks.

``zoo_post_export`` runs onnxscript's optimizer over the exported file (constant folding,
dead code removal) and records node counts; ``zoo_register_commands`` adds ``zoo stats``.
"""

from typing import Annotated

import typer

from zoo import BuiltModel, ModelSpec, Preprocessing, Source, hookimpl
from zoo.errors import UnknownModelError

MODELS = ("mlp",)


class TinySource(Source):
    name = "tiny"
    example = "mlp"

    def models(self, pattern=None):
        from zoo.source import match

        return match(MODELS, pattern)

    def resolve(self, name):
        return ModelSpec(self.name, name, self.default_weights) if name in MODELS else None

    def build(self, spec, recipe):
        if spec.name not in MODELS:
            raise UnknownModelError(f"tiny has no model {spec.name!r}; it has {', '.join(MODELS)}")
        import torch
        from torch import nn

        class Scale(nn.Module):
            def forward(self, x):
                return x * 1.0 + 0.0  # folded away by the optimizer, so the test sees it work

        torch.manual_seed(0)
        module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4), Scale(), nn.ReLU(), nn.Linear(4, 2))
        preprocessing = Preprocessing(input_size=(3, 8, 8), resize=8, crop=(8, 8))
        return BuiltModel(module=module.eval(), preprocessing=preprocessing, labels=["no", "yes"])


@hookimpl
def zoo_register_sources(register):
    register(TinySource())


@hookimpl
def zoo_post_export(path, metadata):
    import onnx
    import onnxscript.optimizer

    model = onnx.load(str(path))
    before = len(model.graph.node)
    model = onnxscript.optimizer.optimize(model)
    onnx.save(model, str(path))
    metadata["zoo_test_tiny"] = {"nodes_before": before, "nodes_after": len(model.graph.node)}


def stats(json_: Annotated[bool, typer.Option("--json")] = False):
    """How many models the store holds."""
    import json

    import zoo

    count = len(zoo.entries())
    print(json.dumps({"entries": count}) if json_ else f"{count} entries")


@hookimpl
def zoo_register_commands(register):
    register(stats)
