"""Fetch-only sources for tests/test_fetch_only.py: the earlier dict answer, and two the kit must see through.

``legacy`` returns a metadata dict with a ``Preprocessing`` and no ``weights`` (what docs/plugins.md
used to invite); ``notjson`` returns a set among its stats (not JSON); ``slotted`` is a source
object that takes no attributes (the kit's blame step cannot patch it).
"""

from zoo.plugin import FetchedModel, ModelSpec, Preprocessing, Source, UnknownModelError, hookimpl, match

MODELS = ("rgb",)


def write_rgb(directory):
    """A 3x2x2-input classifier of the mean colour: GlobalAveragePool, Flatten (3 outputs)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["rgb"])],
        "rgb", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 2, 2])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["batch", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=10),
              str(directory / "model.onnx"))


class Ready(Source):
    def models(self, pattern=None):
        return match(MODELS, pattern)

    def fetch(self, spec, recipe, directory, progress=None):
        if spec.name not in MODELS:
            raise UnknownModelError(f"{self.name} has no model {spec.name!r}")
        write_rgb(directory)
        return self.describe()


class Legacy(Ready):
    name = "legacy"

    def describe(self):
        return {"preprocessing": Preprocessing(input_size=(3, 2, 2), resize=2, crop=(2, 2)), "labels": ["r", "g", "b"]}


class NotJson(Ready):
    name = "notjson"

    def describe(self):
        return {"weights": {"measured": {1, 2}}}


class Slotted:
    __slots__ = ()
    name = "slotted"

    def models(self, pattern=None):
        return match(MODELS, pattern)

    def resolve(self, name):
        return ModelSpec(self.name, name) if name in MODELS else None

    def fetch(self, spec, recipe, directory, progress=None):
        if spec.name not in MODELS:
            raise UnknownModelError(f"slotted has no model {spec.name!r}")
        write_rgb(directory)
        return FetchedModel(labels=["r", "g", "b"])


@hookimpl
def zoo_register_sources(register):
    register(Legacy())
    register(NotJson())
    register(Slotted())
