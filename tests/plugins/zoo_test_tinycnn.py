"""A third-party source as issue 12's author wrote it from the docs, using only ``zoo.plugin``.

A small catalogue of CNNs with its own labels and preprocessing; ``spec()`` pins the seed
behind ``default`` and adds the architecture, so ``tinycnn:m`` and an alias to it share a
key; bare names are not claimed (users type ``tinycnn:NAME``); ``--weights PATH`` loads a
state_dict with the checkpoint helpers.
"""

from zoo.plugin import (
    BuiltModel,
    ModelSpec,
    Preprocessing,
    Source,
    UnknownModelError,
    hookimpl,
    load_into,
    load_state_dict,
    looks_like_path,
    match,
    refuse_options,
    report,
)

WIDTHS = {"m": 4, "l": 8}
SEED = 1234
LABELS = ["cat", "dog", "fox"]


class TinyCNN(Source):
    name = "tinycnn"
    example = "m"

    def models(self, pattern=None):
        return match(WIDTHS, pattern)

    def resolve(self, name):
        return None  # bare names stay free for other sources: users write tinycnn:NAME

    def spec(self, name, weights, options):
        refuse_options(self.name, options)
        if weights == "default":  # the seed behind "default", pinned into the key
            weights = f"seed{SEED}"
        return ModelSpec(self.name, name, weights, (("arch", f"cnn-w{WIDTHS.get(name, 0)}"),))

    def build(self, spec, recipe):
        if spec.name not in WIDTHS:
            raise UnknownModelError(f"tinycnn has no model {spec.name!r}; it has {', '.join(WIDTHS)}")
        import torch
        from torch import nn

        report(f"making a {WIDTHS[spec.name]}-channel CNN")  # what a long step would say (a download...)
        if spec.weights.startswith("seed"):
            torch.manual_seed(int(spec.weights[4:]))
        width = WIDTHS[spec.name]
        module = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(width, len(LABELS)))
        weights = {"seed": int(spec.weights[4:])} if spec.weights.startswith("seed") else {}
        if looks_like_path(spec.weights):
            load_into(module, load_state_dict(spec.weights), spec.weights)
            weights = {"file": spec.weights}
        return BuiltModel(module=module.eval(), labels=list(LABELS), weights=weights,
                          preprocessing=Preprocessing(input_size=(3, 16, 16), resize=18, crop=(16, 16)))


@hookimpl
def zoo_register_sources(register):
    register(TinyCNN())
