"""`zoo bench`: the contract keys, real timings, every mode's loop, and honest providers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import NO_CUDA, TINY, assert_one_line_error, cuda_works

CONTRACT = {"provider", "batch", "mode", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput"}


def check_timings(result: dict) -> None:
    assert CONTRACT <= set(result)
    assert 0 < result["min_ms"] <= result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]
    assert result["throughput"] == pytest.approx(result["batch"] * 1000 / result["mean_ms"], rel=1e-3)
    assert result["session_create_ms"] > 0 and result["first_run_ms"] > 0


def test_single_batch_prints_one_object_with_the_contract_keys(copy_store: Path, zoo) -> None:
    out = json.loads(zoo("bench", *TINY, "--warmup", "2", "--iterations", "8",
                         "--json").stdout)
    check_timings(out)
    assert out["provider"] == "cpu" and out["batch"] == 1 and out["mode"] == "naive"
    assert out["iterations"] == 8 and out["input_shape"] == {"input": [1, 3, 160, 160]}
    assert out["device"]["kind"] == "cpu" and out["device"]["name"]
    assert out["versions"]["zoo"] and out["versions"]["numpy"]
    assert out["model"]["ref"] == "timm:test_resnet"


def test_batches_and_modes_give_one_result_each(copy_store: Path, zoo) -> None:
    out = json.loads(zoo("bench", *TINY, "--batch", "1,3", "--mode", "naive,iobinding",
                         "--warmup", "1", "--iterations", "4", "--json").stdout)
    assert out["provider"] == "cpu"
    assert [(r["mode"], r["batch"]) for r in out["results"]] == [
        ("naive", 1), ("naive", 3), ("iobinding", 1), ("iobinding", 3)]
    for result in out["results"]:
        check_timings(result)
        assert result["input_shape"]["input"][0] == result["batch"]
    human = zoo("bench", *TINY, "--batch", "2", "--iterations", "3").stdout
    assert "naive" in human and "P50" in human and "cpu" in human


def test_one_batch_size_prefers_the_entry_traced_at_it(copy_store: Path, zoo) -> None:
    (default,) = [e["key"] for e in json.loads(zoo("list", "--json").stdout)]
    traced = json.loads(zoo("pull", *TINY, "--batch", "2", "--json").stdout)["key"]
    timed = {n: json.loads(zoo("bench", *TINY, "--batch", n, "--warmup", "0", "--iterations", "2",
                               "--json").stdout)["model"]["key"] for n in ("2", "3")}
    assert timed == {"2": traced, "3": default}  # none traced at 3: the default entry, no export
    assert len(json.loads(zoo("list", "--json").stdout)) == 2


def test_bound_loop_computes_what_session_run_computes(tiny_store: Path, monkeypatch) -> None:
    from zoo.api import locate
    from zoo.runtime import Binding, open_session, random_feeds

    monkeypatch.setenv("ZOO_HOME", str(tiny_store))
    target = locate("timm:test_resnet", weights="none", exporter="torchscript")
    session = open_session(target.path, "cpu")
    feeds = random_feeds(session.inputs, 2, target.preprocessing)
    (want,) = session.ort.run(None, feeds)
    binding = Binding(session, feeds)
    assert list(binding.outputs) == ["logits"]  # preallocated: the symbolic batch came from the input
    for _ in range(2):  # the preallocated output is rewritten in place, run after run
        binding.run()
        assert binding.outputs["logits"].shape() == [2, 1000]
        np.testing.assert_allclose(binding.outputs["logits"].numpy(), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(binding.results()[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("args", "fragments"), [
    (["--mode", "cudagraph"], ["cudagraph mode needs --provider cuda"]),
    (["--mode", "fast"], ["unknown --mode 'fast'"]),
    (["--batch", "one"], ["cannot read --batch", "1,8,32"]),
    (["--batch", "0"], ["at least 1"]),
    (["--compare", "tensorflow"], ["--compare takes 'torch'"]),
    (["--static-batch", "--batch", "1,2"], ["single --batch"]),
])
def test_bad_bench_flags_are_one_line(copy_store: Path, zoo, args: list[str], fragments: list[str]) -> None:
    proc = zoo("bench", *TINY, "--iterations", "1", *args, check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc, *fragments)


def test_unavailable_cuda_is_refused(copy_store: Path, zoo) -> None:
    if cuda_works():
        pytest.skip("CUDA really works here: nothing to refuse")
    proc = zoo("bench", *TINY, "--provider", "cuda", "--json", check=False)
    assert proc.returncode == 4
    assert_one_line_error(proc, "CUDAExecutionProvider", "did not load")
    proc = zoo("bench", *TINY, "--provider", "auto", "--mode", "cudagraph", check=False)
    assert_one_line_error(proc, "cudagraph mode needs CUDA", "session runs on cpu")


def test_compare_torch_times_the_same_model_in_eager_mode(copy_store: Path, zoo) -> None:
    out = json.loads(zoo("bench", *TINY, "--compare", "torch", "--warmup", "1",
                         "--iterations", "4", "--json").stdout)
    check_timings(out)
    eager = out["compare"]["torch"]
    assert eager["mode"] == "eager" and eager["device"] == "cpu" and eager["batch"] == 1
    assert eager["p50_ms"] > 0 and eager["throughput"] > 0
    assert out["compare"]["speedup_p50"] == pytest.approx(eager["p50_ms"] / out["p50_ms"], rel=1e-2)


@pytest.mark.skipif(not cuda_works(), reason=NO_CUDA)
def test_cuda_modes_really_run_on_the_gpu(copy_store: Path, zoo) -> None:
    zoo("pull", *TINY, "--static-batch", "--batch", "2")
    out = json.loads(zoo("bench", *TINY, "--static-batch", "--batch", "2", "--provider",
                         "cuda", "--mode", "naive,iobinding,cudagraph", "--iterations", "20", "--json").stdout)
    for result in out["results"]:
        check_timings(result)
        assert result["provider"] == "cuda" and result["session_providers"][0] == "CUDAExecutionProvider"
        assert result["device"]["kind"] == "cuda"
