"""A source of ready ONNX files (``Source.fetch``): it writes a small graph instead of building."""

from zoo import ModelSpec, Source, hookimpl
from zoo.errors import UnknownModelError

MODELS = ("double",)


class ReadySource(Source):
    name = "ready"

    def models(self, pattern=None):
        from zoo.source import match

        return match(MODELS, pattern)

    def resolve(self, name):
        return ModelSpec(self.name, name, self.default_weights) if name in MODELS else None

    def fetch(self, spec, recipe, directory, progress=None):
        if spec.name not in MODELS:
            raise UnknownModelError(f"ready has no model {spec.name!r}; it has {', '.join(MODELS)}")
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Add", ["input", "input"], ["output"])], "double",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])])
        # IR version 10: what ONNX Runtime reads (onnx's newest default can be ahead of it).
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
        onnx.save(model, str(directory / "model.onnx"))
        return {"weights": {"tag": spec.weights}, "labels": None}


@hookimpl
def zoo_register_sources(register):
    register(ReadySource())
