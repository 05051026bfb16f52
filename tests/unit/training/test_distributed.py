"""Data-parallel training: two gloo processes on loopback against one process.

With 2 ranks and batch size B, an epoch's batches are trained in rounds (0, 1), (2, 3), ...
whose DDP-averaged gradient is the gradient of the concatenated batch when the loss is a batch
mean. So every 2-process run here is checked against a 1-process run whose batches are those
pairs concatenated (for the models: batch size 2B), with the same seed and so the same data
order. Float32 sums in another order differ in the last bits and Adam carries that along, so
parameters, gradients and curves are compared with ``atol = ATOL`` (1e-5; the gaps measured
here are at most 4e-7); the two ranks themselves must agree exactly.

The 2-process job runs once, in one test: this file, run as a script, is one rank (the test
starts both with a file rendezvous, a collective timeout and an overall deadline).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from clrec import distributed
from clrec.data.schema import Dataset
from clrec.encoders.cache import EmbeddingCache
from clrec.encoders.modalities import TextModality, encode_dataset
from clrec.encoders.text import TextEncoder, TextEncoderConfig, TextTemplate
from clrec.errors import ClrecError
from clrec.models.base import Recommender
from clrec.models.lightgcn import LightGCN
from clrec.models.mf import BPRMF, EmbeddingRecommender
from clrec.training.loop import CHECKPOINT_NAME, LoopConfig, TrainResult, run_training
from tiny_bert import make_tiny_bert

ATOL = 1e-5  # float32 reduction order, carried through a few Adam steps
DEADLINE_SECONDS = 180  # the whole 2-process job; a hang fails instead of blocking CI
WORLD = 2
SEED = 5
TIMING = {"seconds", "train_seconds", "eval_seconds"}
ROWS, BATCH = 64, 6  # 11 batches per epoch: 5 rounds of 2, the 4-row tail dropped
SCRIPTED = [0.1, 0.3, 0.2, 0.25, 0.3, 0.9, 1.0]  # patience 3: best epoch 2, stop after 5

_data = torch.Generator().manual_seed(0)
X = torch.randn(ROWS, 3, generator=_data)
Y = X @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.05 * torch.randn(ROWS, 1, generator=_data)
X_VALID = torch.randn(32, 3, generator=_data)
Y_VALID = X_VALID @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3


# ---------------------------------------------------------------------- the toy problem
def _module(seed: int = 123) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def _epoch_batches(epoch: int) -> list[Tensor]:
    """Shuffled row batches of BATCH, from a generator seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(SEED * 100_003 + epoch)
    return list(torch.randperm(ROWS, generator=generator).split(BATCH))


def _merged_batches(epoch: int) -> list[Tensor]:
    """What one process must train on to match 2: batches 2j and 2j+1 concatenated."""
    batches = _epoch_batches(epoch)
    return [torch.cat(batches[i : i + WORLD]) for i in range(0, len(batches) - 1, WORLD)]


def _loss_fn(
    module: nn.Module, seen: list[list[int]] | None = None
) -> Callable[[Tensor], tuple[Tensor, dict[str, float]]]:
    def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        if seen is not None:
            seen.append(index.tolist())
        error = module(X[index]) - Y[index]  # (B, 1)
        mse = (error**2).mean()
        return mse, {"mse": float(mse.detach()), "mae": float(error.abs().mean().detach())}

    return batch_loss


def _validator(module: nn.Module) -> Callable[[], dict[str, float]]:
    def validate() -> dict[str, float]:
        with torch.no_grad():
            mse = float(((module(X_VALID) - Y_VALID) ** 2).mean())
        return {"ndcg@10": -mse}

    return validate


def _scripted(calls: list[int]) -> Callable[[], dict[str, float]]:
    def validate() -> dict[str, float]:
        calls.append(len(calls))
        return {"ndcg@10": SCRIPTED[len(calls) - 1]}

    return validate


def _config(**overrides: Any) -> LoopConfig:
    settings: dict[str, Any] = {"epochs": 6, "lr": 0.05, "progress": False, "patience": 0}
    settings.update(overrides)
    return LoopConfig(**settings)


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _grads(module: nn.Module) -> dict[str, Tensor]:
    """The gradients the last optimiser step used (the loop leaves them in place)."""
    return {k: p.grad.detach().clone() for k, p in module.named_parameters() if p.grad is not None}


def _without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in history]


# ---------------------------------------------------------------------- the models
def _blocks() -> tuple[Dataset, np.ndarray]:
    """20 users in two blocks of 6 items, each missing one in-block item: 100 pairs."""
    rows, held_out = [], []
    for user in range(20):
        block = range(0, 6) if user < 10 else range(6, 12)
        missing = block[user % 6]
        held_out.append(missing)
        rows += [(f"u{user:02d}", f"i{item:02d}") for item in block if item != missing]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    catalogue = pd.DataFrame({"id": [f"i{i:02d}" for i in range(12)]})
    return Dataset.from_external("blocks", frame, item_content=catalogue), np.array(held_out)


def _margin(held_out: np.ndarray) -> Callable[[Recommender], dict[str, float]]:
    """A smooth stand-in metric (no rank ties to flip): held-out score minus the mean score."""

    def validator(model: Recommender) -> dict[str, float]:
        scores = model.score(np.arange(len(held_out)))  # (U, I)
        gap = scores[np.arange(len(held_out)), held_out] - scores.mean(axis=1)
        return {"ndcg@10": float(gap.mean())}

    return validator


def _fit_model(kind: str, batch_size: int) -> EmbeddingRecommender:
    """BPR-MF or LightGCN as users call it: 100 pairs, so batch 10 on 2 ranks ≡ batch 20."""
    settings: dict[str, Any] = {
        "embedding_size": 4,
        "batch_size": batch_size,
        "epochs": 8,
        "lr": 0.05,
        "patience": 0,
        "progress": False,
        "device": "cpu",
        "num_threads": 1,
    }
    model = BPRMF(**settings) if kind == "bpr" else LightGCN(n_layers=2, **settings)
    data, held_out = _blocks()
    return model.fit(data, _margin(held_out))


def _tables(model: EmbeddingRecommender) -> dict[str, Tensor]:
    assert model.tables is not None
    return _state(model.tables)


# ---------------------------------------------------------------------- catalogue encoding
TITLES = [  # 9 items, 7 distinct texts: one title repeated, one item without text
    "space robot story",
    "love war drama",
    "night city crime",
    None,
    "space robot story",
    "family comedy film",
    "the king and the queen",
    "horror night",
    "a dog and a cat",
]


def _catalogue() -> Dataset:
    ids = [f"i{i}" for i in range(len(TITLES))]
    return Dataset.from_external(
        "catalogue",
        pd.DataFrame({"user": "u", "item": ids}),
        item_content=pd.DataFrame({"id": ids, "title": TITLES}),
        item_fields={"title": "text"},
    )


def _text_modality(out: Path) -> TextModality:
    config = TextEncoderConfig(model=str(out / "tiny-bert"), threads=1, progress=False)
    return TextModality("text", TextTemplate("{title}"), config)


def _encode_catalogue(out: Path) -> dict[str, Any]:
    """The catalogue encoded twice through one cache shared by the ranks (the second time
    from the cache), with every text this rank's model was asked to encode."""
    asked: list[str] = []
    original = TextEncoder.encode

    def spy(self: TextEncoder, texts: Any, **kwargs: Any) -> np.ndarray:
        asked.extend(texts)
        return original(self, texts, **kwargs)

    TextEncoder.encode = spy  # type: ignore[method-assign]  # this rank's process only
    try:
        runs = [encode_dataset(_catalogue(), [_text_modality(out)], out / "cache") for _ in "ab"]
    finally:
        TextEncoder.encode = original  # type: ignore[method-assign]
    return {
        "asked": asked,
        "vectors": [vectors["text"] for vectors, _ in runs],
        "counts": [
            (part.encoded, part.cached, part.skipped)
            for _, summary in runs
            for part in summary.modalities.values()
        ],
    }


# ---------------------------------------------------------------------- one rank (a script)
def _rank_job(rank: int, out: Path) -> dict[str, Any]:
    """Everything the 2-process tests look at, computed on this rank."""
    results: dict[str, Any] = {"world": distributed.world(), "main": distributed.is_main()}

    # plain training with validation every epoch: data order, weights, curve
    module, seen = _module(seed=123 + rank), []  # rank 1 starts elsewhere: DDP syncs it
    result = run_training(
        module,
        _epoch_batches,
        _loss_fn(module, seen),
        _config(),
        validate=_validator(module),
    )
    results["plain"] = {
        "state": _state(module),
        "grads": _grads(module),
        "result": result,
        "seen": seen,
    }

    # early stopping decided on rank 0's scripted scores
    module, calls = _module(), []
    config = _config(epochs=20, patience=3)
    result = run_training(
        module, _epoch_batches, _loss_fn(module), config, validate=_scripted(calls)
    )
    results["early"] = {"state": _state(module), "result": result, "calls": len(calls)}

    # rank 0's clock: a limit that is always spent stops both after epoch 1
    module = _module()
    result = run_training(
        module, _epoch_batches, _loss_fn(module), _config(epochs=5, time_limit_minutes=1e-9)
    )
    results["timed"] = {"result": result}

    # only rank 0 writes; a resumed run on both ranks reads rank 0's checkpoint
    module = _module()
    own = {"checkpoint_dir": str(out / f"ckpt-{rank}"), "log_dir": str(out / f"logs-{rank}")}
    run_training(
        module,
        _epoch_batches,
        _loss_fn(module),
        _config(epochs=3, **own),
        validate=_validator(module),
    )
    module = _module(seed=7)
    resumed = run_training(
        module,
        _epoch_batches,
        _loss_fn(module),
        _config(checkpoint_dir=str(out / "ckpt-0")),
        validate=_validator(module),
    )
    results["resumed"] = {"state": _state(module), "result": resumed}

    # the models, unchanged: batch 10 on each of 2 ranks
    for kind in ("bpr", "lightgcn"):
        model = _fit_model(kind, batch_size=10)
        results[kind] = {"tables": _tables(model), "history": model.history}

    # catalogue-style sharded work
    inputs: list[int] = []

    def encode(items: Any) -> list[int]:
        inputs.extend(items)
        return [10 * item for item in items]

    results["sharded"] = {"out": distributed.sharded_map(encode, list(range(7))), "in": inputs}
    results["catalogue"] = _encode_catalogue(out)

    # failures reach every rank: a bad loss on rank 1 only, a validator failing on rank 0
    module = _module()
    plain = _loss_fn(module)

    def poisoned(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        loss, parts = plain(index)
        return (loss * float("nan"), parts) if rank == 1 else (loss, parts)

    results["nan"] = _error(lambda: run_training(module, _epoch_batches, poisoned, _config()))

    def broken() -> dict[str, float]:
        raise RuntimeError("validator exploded")

    module = _module()
    results["broken"] = _error(
        lambda: run_training(module, _epoch_batches, _loss_fn(module), _config(), validate=broken)
    )

    # epochs every rank cannot share alike
    loss = _loss_fn(module)
    results["few"] = _error(
        lambda: run_training(module, lambda epoch: [torch.arange(4)], loss, _config())
    )
    uneven = _epoch_batches(1)[: 4 + rank]
    results["uneven"] = _error(lambda: run_training(module, lambda epoch: uneven, loss, _config()))
    return results


def _error(call: Callable[[], TrainResult]) -> tuple[str, str] | None:
    try:
        call()
    except Exception as err:
        return type(err).__name__, str(err)
    return None


def _main(rank: int, out: Path) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo",
        init_method=(out / "rendezvous").as_uri(),
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),  # a collective left waiting fails, it does not hang
    )
    try:
        torch.save(_rank_job(rank, out), out / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    _main(int(sys.argv[1]), Path(sys.argv[2]))


# ---------------------------------------------------------------------- the 2-process job
def _launch(out: Path) -> list[dict[str, Any]]:
    """Start both ranks of this file and load what each computed."""
    make_tiny_bert(out / "tiny-bert")
    tests = str(Path(__file__).resolve().parents[2])  # for the helpers this file imports
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    if sys.platform == "linux":
        env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback: no network needed
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(rank), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(WORLD)
    ]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=DEADLINE_SECONDS)[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"the 2-process job did not finish in {DEADLINE_SECONDS} s")
    for rank, (proc, log) in enumerate(zip(procs, logs, strict=True)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{log}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow  # two fresh interpreters importing torch: ~15 s of CPU on 2 cores
def test_two_processes_train_like_one_process_with_merged_batches(tmp_path: Path) -> None:
    """One launch (so ``pytest -n`` never starts the job twice), then each check in turn."""
    results = _launch(tmp_path)
    assert [r["world"] for r in results] == [(0, 2), (1, 2)]
    assert [r["main"] for r in results] == [True, False]
    _check_data_order(results)
    _check_plain_run(results)
    for kind in ("bpr", "lightgcn"):
        _check_model(results, kind)
    _check_stopping(results)
    _check_files_and_resuming(results, tmp_path)
    _check_failures(results)
    _check_sharded_map(results)
    _check_catalogue(results, tmp_path)


def _assert_close(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=ATOL, msg=key)


def _assert_same_curve(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    a, b = _without_timing(a), _without_timing(b)
    assert [entry.keys() for entry in a] == [entry.keys() for entry in b]
    for left, right in zip(a, b, strict=True):
        for key in left:
            assert left[key] == pytest.approx(right[key], abs=ATOL), key


def _check_data_order(results: list[dict[str, Any]]) -> None:
    """Rank r trains batches r, r + 2, ... of the seeded epoch; the odd tail batch is dropped."""
    rounds = len(_epoch_batches(1)) // WORLD  # 11 batches: 5 rounds
    for rank, result in enumerate(results):
        expected = [
            batch.tolist()
            for epoch in range(1, 7)
            for batch in _epoch_batches(epoch)[rank : WORLD * rounds : WORLD]
        ]
        assert result["plain"]["seen"] == expected
    first_epoch = [row for r in results for batch in r["plain"]["seen"][:rounds] for row in batch]
    assert len(set(first_epoch)) == len(first_epoch) == 2 * rounds * BATCH  # disjoint shares


def _check_plain_run(results: list[dict[str, Any]]) -> None:
    """Weights, the last step's gradient (the mean over ranks, not the sum: Adam alone would not
    tell) and the curve match one process on merged batches; the ranks agree exactly,
    although rank 1 started from other weights."""
    module = _module()
    reference = run_training(
        module, _merged_batches, _loss_fn(module), _config(), validate=_validator(module)
    )
    for result in results:
        _assert_close(result["plain"]["state"], _state(module))
        _assert_close(result["plain"]["grads"], _grads(module))
        _assert_same_curve(result["plain"]["result"].history, reference.history)
        assert result["plain"]["result"].best_epoch == reference.best_epoch
    for key, value in results[0]["plain"]["state"].items():
        assert torch.equal(value, results[1]["plain"]["state"][key])
    assert not torch.equal(_module(seed=124).weight, _module().weight)


def _check_model(results: list[dict[str, Any]], kind: str) -> None:
    """A model's own fit, unchanged: batch 10 on each of 2 ranks ≡ batch 20 in one process."""
    reference = _fit_model(kind, batch_size=20)
    for result in results:
        _assert_close(result[kind]["tables"], _tables(reference))
        _assert_same_curve(result[kind]["history"], reference.history)
    assert reference.history[-1]["ndcg@10"] > reference.history[0]["ndcg@10"]  # it learned


def _check_stopping(results: list[dict[str, Any]]) -> None:
    """Rank 0 alone validates; both ranks stop together and restore the same best epoch; rank
    0's clock ends both at the time limit."""
    module, calls = _module(), []
    config = _config(epochs=20, patience=3)
    reference = run_training(
        module, _merged_batches, _loss_fn(module), config, validate=_scripted(calls)
    )
    assert reference.epochs_run == 5 and reference.best_epoch == 2
    assert [r["early"]["calls"] for r in results] == [5, 0]
    for result in results:
        run = result["early"]["result"]
        assert (run.epochs_run, run.best_epoch, run.best_score) == (5, 2, 0.3)
        _assert_close(result["early"]["state"], _state(module))
        timed = result["timed"]["result"]
        assert timed.stopped_by_time and timed.epochs_run == 1


def _check_files_and_resuming(results: list[dict[str, Any]], out: Path) -> None:
    """Only rank 0 writes checkpoints and logs; resuming on both ranks from rank 0's checkpoint
    ends exactly where the uninterrupted 2-process run did."""
    assert (out / "ckpt-0" / CHECKPOINT_NAME).is_file()
    assert any((out / "logs-0").iterdir())
    assert not (out / "ckpt-1").exists() and not (out / "logs-1").exists()
    for result in results:
        resumed = result["resumed"]
        assert resumed["result"].resumed_from == 3 and resumed["result"].epochs_run == 6
        for key, value in result["plain"]["state"].items():
            assert torch.equal(resumed["state"][key], value)
        _assert_same_curve(resumed["result"].history, result["plain"]["result"].history)


def _check_failures(results: list[dict[str, Any]]) -> None:
    """A bad loss on rank 1 only, a validator failing on rank 0, too few or uneven batches:
    every rank raises (none is left waiting in a collective)."""
    for result in results:
        kind, message = result["nan"]
        assert kind == "ClrecError" and "training loss became nan in epoch 1" in message
        assert result["few"] == (
            "ClrecError",
            "epoch 1 has 1 batch(es), fewer than the 2 processes training it; lower the batch "
            "size or start fewer processes",
        )
        kind, message = result["uneven"]
        assert kind == "ClrecError" and "4, 5 batches on ranks 0..1" in message
    assert results[0]["broken"] == ("RuntimeError", "validator exploded")
    kind, message = results[1]["broken"]
    assert kind == "ClrecError" and "rank 0 failed" in message and "validator exploded" in message


def _check_sharded_map(results: list[dict[str, Any]]) -> None:
    """Each rank maps items[rank::2]; both get every result back in order."""
    assert [r["sharded"]["in"] for r in results] == [[0, 2, 4, 6], [1, 3, 5]]
    for result in results:
        assert result["sharded"]["out"] == [0, 10, 20, 30, 40, 50, 60]


def _check_catalogue(results: list[dict[str, Any]], out: Path) -> None:
    """Each rank encodes its half of the distinct texts; both get every vector, equal to one
    process's; rank 0 alone fills the cache, which serves the second run on both ranks."""
    distinct = list(dict.fromkeys(title for title in TITLES if title is not None))
    asked = [r["catalogue"]["asked"] for r in results]
    assert asked == [distinct[0::2], distinct[1::2]]
    alone, summary = encode_dataset(_catalogue(), [_text_modality(out)], None)
    for result in results:
        first, second = result["catalogue"]["vectors"]
        np.testing.assert_array_equal(first, results[0]["catalogue"]["vectors"][0])
        np.testing.assert_array_equal(second, first)
        np.testing.assert_allclose(first, alone["text"], atol=ATOL)
        assert np.isnan(first[3]).all() and not np.isnan(np.delete(first, 3, axis=0)).any()
        assert result["catalogue"]["counts"] == [(8, 0, 1), (0, 8, 1)]
    assert summary.modalities["text"].encoded == 8
    with EmbeddingCache(out / "cache") as cache:
        assert cache.count() == len(distinct)


# ---------------------------------------------------------------------- without a group
def test_single_process_helpers_are_the_identity() -> None:
    assert distributed.world() == (0, 1)
    assert distributed.is_main() and not distributed.is_distributed()
    assert distributed.shard([1, 2, 3], equal=True) == [1, 2, 3]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.all_gather_objects(3) == [3]
    assert distributed.run_on_main(lambda: 4) == 4
    assert distributed.sharded_map(lambda xs: [x + 1 for x in xs], [1, 2]) == [2, 3]
    value = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.mean_over_ranks(value), value)
    distributed.barrier()
    distributed.shutdown()


def test_sharded_map_refuses_a_wrong_length() -> None:
    with pytest.raises(ClrecError, match="2 results for 3 inputs"):
        distributed.sharded_map(lambda xs: list(xs)[:2], [1, 2, 3])


def test_init_from_torchrun_refuses_an_unknown_backend() -> None:
    with pytest.raises(ClrecError, match="'gloo' or 'nccl'"):
        distributed.init_from_torchrun(local_rank=0, backend="mpi")
    assert not torch.distributed.is_initialized()
