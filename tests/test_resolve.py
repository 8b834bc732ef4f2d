"""Name resolution: aliases, refs, claims by several sources."""

from __future__ import annotations

import pytest
from helpers import catalogue, host_with

from zoo.errors import AmbiguousNameError, UnknownModelError
from zoo.registry import Registry
from zoo.resolve import resolve, split_ref
from zoo.spec import ModelSpec


def test_one_claimant_wins_several_is_an_error() -> None:
    host = host_with(catalogue("alpha", ["net_a", "shared"]), catalogue("beta", ["net_b", "shared"]))
    registry = Registry({})
    assert resolve("net_b", host, registry).spec.ref == "beta:net_b"
    with pytest.raises(AmbiguousNameError, match=r"alpha:shared, beta:shared"):
        resolve("shared", host, registry)
    with pytest.raises(UnknownModelError, match="did you mean: alpha:net_a"):
        resolve("net_aa", host, registry)


def test_alias_wins_and_flags_layer_over_alias_defaults(home) -> None:
    host = host_with(catalogue("torchvision", ["resnet18"]))
    registry = Registry.load()
    resolved = resolve("resnet18", host, registry, recipe_flags={"opset": 17, "size": None})
    assert resolved.spec == ModelSpec("torchvision", "resnet18", "IMAGENET1K_V1")
    assert resolved.recipe.opset == 17 and resolved.recipe.size is None
    other = resolve("resnet18", host, registry, weights="none")
    assert other.key != resolved.key and len(other.key) == 20


def test_split_ref_keeps_drive_paths_whole() -> None:
    assert split_ref("timm:resnet50.a1_in1k") == ("timm", "resnet50.a1_in1k")
    assert split_ref("resnet50") == (None, "resnet50")
    assert split_ref("C:\\models\\x.pth") == (None, "C:\\models\\x.pth")
