"""A fetch-only source serving ready ONNX files from a company mirror, as docs/plugins.md advises.

The mirror is configured by ``ZOO_TEST_MIRROR`` (a folder with ``catalogue.json``: model name
-> sha256); unset, the source claims no bare name and its ``spec`` (which pins the file the
catalogue lists) cannot answer. ``ZOO_TEST_MIRROR_FAIL=resolve`` makes ``resolve`` raise a bare
exception, as a plugin with a bug would. Nothing here imports torch.
"""

import json
import os
from pathlib import Path

from zoo import ModelSpec, Source, hookimpl
from zoo.errors import EnvironmentProblem, UnknownModelError, UserError
from zoo.source import match, refuse_options


class MirrorSource(Source):
    name = "mirror"
    default_weights = "published"

    def _catalogue(self) -> dict:
        root = os.environ.get("ZOO_TEST_MIRROR")
        if not root:
            raise EnvironmentProblem("the mirror is not configured: set ZOO_TEST_MIRROR")
        return json.loads((Path(root) / "catalogue.json").read_text())

    def models(self, pattern=None):
        return match(sorted(self._catalogue()), pattern)

    def resolve(self, name):
        if os.environ.get("ZOO_TEST_MIRROR_FAIL") == "resolve":
            raise RuntimeError("the catalogue server answered 500")
        if not os.environ.get("ZOO_TEST_MIRROR"):
            return None
        return ModelSpec(self.name, name, self.default_weights) if name in self._catalogue() else None

    def spec(self, name, weights, options):
        refuse_options(self.name, options)
        if weights != self.default_weights:
            raise UserError(f"mirror:{name} is a ready ONNX file: --weights {weights} cannot apply")
        catalogue = self._catalogue()
        if name not in catalogue:
            raise UnknownModelError(f"the mirror has no model {name!r}")
        return ModelSpec(self.name, name, weights, (("catalogue_sha256", catalogue[name]),))

    def fetch(self, spec, recipe, directory, progress=None):
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Softmax", ["input"], ["scores"], axis=1)], spec.name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
            [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
        onnx.save(model, str(directory / "model.onnx"))
        return {"weights": {"tag": spec.weights}, "labels": ["red", "green", "blue"]}


@hookimpl
def zoo_register_sources(register):
    register(MirrorSource())
