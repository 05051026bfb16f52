"""The shared epoch loop: learning, early stopping with best-state restore, the wall-clock
limit, exact resumption from checkpoints, fingerprints, damaged files, non-finite losses,
TensorBoard logs, AdamW and config checks — all on a tiny linear regression."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from clrec.errors import ClrecError
from clrec.training.loop import CHECKPOINT_NAME, LoopConfig, TrainResult, run_training

SEED = 5
TIMING = {"seconds", "train_seconds", "eval_seconds"}

_data = torch.Generator().manual_seed(0)
X = torch.randn(64, 3, generator=_data)
Y = X @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.05 * torch.randn(64, 1, generator=_data)
X_VALID = torch.randn(32, 3, generator=_data)
Y_VALID = X_VALID @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3


def _module() -> nn.Linear:
    torch.manual_seed(123)
    return nn.Linear(3, 1)


def _epoch_batches(epoch: int) -> Iterator[Tensor]:
    """Four shuffled batches of 16 rows, drawn from a generator seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(SEED * 100_003 + epoch)
    yield from torch.randperm(len(X), generator=generator).split(16)


def _loss_fn(module: nn.Module) -> Callable[[Tensor], tuple[Tensor, dict[str, float]]]:
    def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        error = module(X[index]) - Y[index]
        mse = (error**2).mean()
        return mse, {"mse": float(mse.detach()), "mae": float(error.abs().mean().detach())}

    return batch_loss


def _validator(module: nn.Module) -> Callable[[], dict[str, float]]:
    def validate() -> dict[str, float]:
        with torch.no_grad():
            mse = float(((module(X_VALID) - Y_VALID) ** 2).mean())
        return {"ndcg@10": -mse, "recall@20": 1.0 / (1.0 + mse)}

    return validate


def _config(**overrides: object) -> LoopConfig:
    settings: dict[str, object] = {"epochs": 6, "lr": 0.05, "progress": False, "patience": 0}
    settings.update(overrides)
    return LoopConfig(**settings)  # type: ignore[arg-type]


def _without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in history]


def _full_loss(module: nn.Module) -> float:
    with torch.no_grad():
        return float(((module(X) - Y) ** 2).mean())


# ---------------------------------------------------------------------- learning
def test_loss_decreases() -> None:
    module = _module()
    before = _full_loss(module)
    result = run_training(module, _epoch_batches, _loss_fn(module), _config(epochs=20))
    losses = [entry["loss"] for entry in result.history]
    assert len(losses) == 20 and result.epochs_run == 20
    assert losses[-1] < 0.1 * losses[0]
    assert _full_loss(module) < 0.1 * before
    assert {"epoch", "loss", "mse", "mae", "seconds", "train_seconds"} <= set(result.history[0])
    assert result.best_epoch == 20 and result.best_score is None and result.resumed_from == 0
    assert not module.training  # left in eval mode


# ---------------------------------------------------------------------- early stopping
@pytest.mark.parametrize(
    ("eval_every", "patience", "scores", "best", "stopped_at"),
    [
        (1, 3, [0.1, 0.3, 0.2, 0.25, 0.3, 0.9, 1.0], 2, 5),  # a tie does not improve
        (2, 2, [0.1, 0.4, 0.2, 0.3, 0.9], 4, 8),  # patience counts evaluations
    ],
)
def test_early_stopping_restores_best_state(
    eval_every: int, patience: int, scores: list[float], best: int, stopped_at: int
) -> None:
    module = _module()
    seen: dict[int, dict[str, Tensor]] = {}
    calls: list[bool] = []

    def validate() -> dict[str, float]:
        calls.append(module.training)
        epoch = len(calls) * eval_every
        seen[epoch] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        return {"ndcg@10": scores[len(calls) - 1]}

    config = _config(epochs=20, eval_every=eval_every, patience=patience)
    result = run_training(module, _epoch_batches, _loss_fn(module), config, validate=validate)
    assert result.epochs_run == stopped_at
    assert len(calls) == stopped_at // eval_every and not any(calls)  # validated in eval mode
    assert result.best_epoch == best and result.best_score == scores[best // eval_every - 1]
    final = module.state_dict()
    for key, value in seen[best].items():
        assert torch.equal(final[key], value)
    assert not torch.equal(final["weight"], seen[stopped_at]["weight"])  # truly restored
    assert [entry["epoch"] for entry in result.history] == sorted(seen)
    assert [entry["ndcg@10"] for entry in result.history] == scores[: len(calls)]


def test_validator_without_the_metric_is_refused() -> None:
    module = _module()
    with pytest.raises(ClrecError, match="ndcg@10"):
        run_training(
            module,
            _epoch_batches,
            _loss_fn(module),
            _config(),
            validate=lambda: {"recall@20": 0.5},
        )


# ---------------------------------------------------------------------- time limit
def test_time_limit_stops_after_one_epoch_and_restores_the_best_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = _module()
    seen: list[dict[str, Tensor]] = []

    def validate() -> dict[str, float]:
        seen.append({k: v.detach().clone() for k, v in module.state_dict().items()})
        return {"ndcg@10": 0.5}

    config = _config(epochs=5, time_limit_minutes=1e-9)  # any epoch takes longer
    with caplog.at_level("INFO", logger="clrec.training.loop"):
        result = run_training(module, _epoch_batches, _loss_fn(module), config, validate=validate)
    assert result.stopped_by_time and result.epochs_run == 1 and len(seen) == 1
    assert result.best_epoch == 1 and result.best_score == 0.5
    assert [int(entry["epoch"]) for entry in result.history] == [1]
    for key, value in seen[0].items():
        assert torch.equal(module.state_dict()[key], value)
    assert any("time limit" in record.getMessage() for record in caplog.records)


def test_time_limit_keeps_the_last_state_without_validation() -> None:
    module = _module()
    config = _config(epochs=5, time_limit_minutes=1e-9)
    result = run_training(module, _epoch_batches, _loss_fn(module), config)
    assert result.stopped_by_time and result.epochs_run == 1 and result.best_epoch == 1


def test_no_time_limit_runs_every_epoch() -> None:
    module = _module()
    config = _config(epochs=4)
    result = run_training(
        module, _epoch_batches, _loss_fn(module), config, validate=_validator(module)
    )
    assert not result.stopped_by_time and result.epochs_run == 4 and len(result.history) == 4


def test_time_limit_on_the_last_epoch_is_not_a_time_stop() -> None:
    module = _module()
    config = _config(epochs=1, time_limit_minutes=1e-9)
    result = run_training(module, _epoch_batches, _loss_fn(module), config)
    assert not result.stopped_by_time and result.epochs_run == 1


def test_patience_stop_is_not_a_time_stop() -> None:
    module = _module()
    scores = iter([0.5, 0.1])
    config = _config(epochs=5, patience=1, time_limit_minutes=1e3)
    result = run_training(
        module, _epoch_batches, _loss_fn(module), config, validate=lambda: {"ndcg@10": next(scores)}
    )
    assert result.epochs_run == 2 and not result.stopped_by_time


def _counting(
    module: nn.Module, calls: list[int]
) -> Callable[[Tensor], tuple[Tensor, dict[str, float]]]:
    inner = _loss_fn(module)

    def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        calls.append(len(index))
        return inner(index)

    return batch_loss


def test_batch_time_check_ends_the_epoch_mid_way_and_validates_it() -> None:
    module = _module()
    calls: list[int] = []
    seen: list[int] = []

    def validate() -> dict[str, float]:
        seen.append(len(calls))
        return {"ndcg@10": 0.5}

    config = _config(epochs=5, time_limit_minutes=1e-9, time_check="batch")
    result = run_training(
        module, _epoch_batches, _counting(module, calls), config, validate=validate
    )
    assert len(calls) == 1 and seen == [1]  # the first batch always runs, then the clock cuts
    assert result.stopped_by_time and result.epochs_run == 1 and result.best_epoch == 1
    assert [int(entry["epoch"]) for entry in result.history] == [1]


def test_a_cut_epoch_is_a_time_stop_even_the_last_or_with_patience_spent() -> None:
    module = _module()
    calls: list[int] = []
    counting = _counting(module, calls)

    def slow_second_epoch(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        if len(calls) == 4:  # epoch 2's first batch outlasts the 0.3 s budget
            time.sleep(0.4)
        return counting(index)

    scores = iter([0.5, 0.1])  # epoch 2 is worse: patience 1 is spent too
    config = _config(epochs=2, patience=1, time_limit_minutes=0.005, time_check="batch")
    result = run_training(
        module,
        _epoch_batches,
        slow_second_epoch,
        config,
        validate=lambda: {"ndcg@10": next(scores)},
    )
    assert len(calls) == 5 and result.epochs_run == 2 and result.best_epoch == 1
    assert result.stopped_by_time


# ---------------------------------------------------------------------- checkpoints
def _checkpointed(
    folder: Path, crash_at: int | None = None, fingerprint: dict[str, object] | None = None
) -> tuple[nn.Module, TrainResult]:
    module = _module()
    inner = _loss_fn(module)
    calls = [0]

    def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        calls[0] += 1
        if calls[0] == crash_at:
            raise RuntimeError("killed")
        return inner(index)

    config = _config(checkpoint_dir=str(folder), patience=10)
    fingerprint = {"model": "linear", "dims": 3} if fingerprint is None else fingerprint
    result = run_training(
        module,
        _epoch_batches,
        batch_loss,
        config,
        validate=_validator(module),
        fingerprint=fingerprint,
    )
    return module, result


def test_resume_after_a_mid_epoch_crash_is_exact(tmp_path: Path) -> None:
    whole_module, whole = _checkpointed(tmp_path / "a")
    assert whole.resumed_from == 0 and whole.epochs_run == 6
    assert (tmp_path / "a" / CHECKPOINT_NAME).is_file()

    with pytest.raises(RuntimeError, match="killed"):
        _checkpointed(tmp_path / "b", crash_at=3 * 4 + 3)  # third batch of epoch 4
    assert not (tmp_path / "b" / "checkpoint.tmp").exists()
    module, resumed = _checkpointed(tmp_path / "b")

    assert resumed.resumed_from == 3 and resumed.epochs_run == 6
    assert _without_timing(resumed.history) == _without_timing(whole.history)
    assert resumed.best_epoch == whole.best_epoch and resumed.best_score == whole.best_score
    whole_state = whole_module.state_dict()
    for key, value in module.state_dict().items():
        assert torch.equal(value, whole_state[key]), key


def test_resuming_a_finished_run_trains_no_more(tmp_path: Path) -> None:
    first_module, first = _checkpointed(tmp_path)
    module, again = _checkpointed(tmp_path, crash_at=1)  # any batch would raise
    assert again.resumed_from == 6 and again.epochs_run == 6
    assert _without_timing(again.history) == _without_timing(first.history)
    for key, value in module.state_dict().items():
        assert torch.equal(value, first_module.state_dict()[key])


def test_resuming_an_early_stopped_run_trains_no_more(tmp_path: Path) -> None:
    scores = iter([0.5, 0.1, 0.1])

    def run() -> tuple[nn.Module, TrainResult]:
        module = _module()
        config = _config(epochs=10, checkpoint_dir=str(tmp_path), patience=2)
        result = run_training(
            module,
            _epoch_batches,
            _loss_fn(module),
            config,
            validate=lambda: {"ndcg@10": next(scores)},
        )
        return module, result

    first_module, first = run()
    assert first.epochs_run == 3 and first.best_epoch == 1
    module, again = run()  # a further validation would exhaust ``scores``
    assert again.epochs_run == 3 and again.best_epoch == 1 and again.resumed_from == 3
    assert torch.equal(module.state_dict()["weight"], first_module.state_dict()["weight"])


def test_another_fingerprint_is_refused(tmp_path: Path) -> None:
    _checkpointed(tmp_path, fingerprint={"model": "linear", "dims": 3})
    with pytest.raises(ClrecError, match="another model") as caught:
        _checkpointed(tmp_path, fingerprint={"model": "linear", "dims": 4})
    assert str(tmp_path / CHECKPOINT_NAME) in str(caught.value)


def test_resume_with_a_learning_rate_schedule_is_exact(tmp_path: Path) -> None:
    def run(folder: Path, crash_at: int | None = None, scheduled: bool = True) -> nn.Module:
        module = _module()
        calls: list[int] = []
        counting = _counting(module, calls)

        def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
            if len(calls) + 1 == crash_at:
                raise RuntimeError("killed")
            return counting(index)

        config = _config(checkpoint_dir=str(folder), optimizer="adamw", weight_decay=0.1)
        factor = (lambda step: 1 / (1 + step)) if scheduled else None
        run_training(module, _epoch_batches, batch_loss, config, lr_factor=factor)
        return module

    whole = run(tmp_path / "a")
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "b", crash_at=3 * 4 + 2)  # second batch of epoch 4
    resumed = run(tmp_path / "b")  # from epoch 3's checkpoint, schedule position included
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, whole.state_dict()[key]), key
    with pytest.raises(ClrecError, match="learning-rate schedule"):
        run(tmp_path / "a", scheduled=False)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", None])
def test_damaged_checkpoint_is_refused_with_its_path(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / CHECKPOINT_NAME
    if content is None:
        torch.save([1, 2, 3], path)  # a readable file, but not a clrec checkpoint
    else:
        path.write_bytes(content)
    with pytest.raises(ClrecError) as caught:
        _checkpointed(tmp_path)
    assert str(path) in str(caught.value)


# ---------------------------------------------------------------------- failures
def test_non_finite_loss_is_a_clear_error() -> None:
    module = _module()
    inner = _loss_fn(module)
    calls = [0]

    def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        calls[0] += 1
        loss, parts = inner(index)
        return (loss * float("nan") if calls[0] == 6 else loss), parts

    with pytest.raises(ClrecError, match=r"nan.*epoch 2"):
        run_training(module, _epoch_batches, batch_loss, _config())


@pytest.mark.parametrize(
    "settings",
    [
        {"epochs": 0},
        {"lr": 0.0},
        {"lr": -1e-3},
        {"lr": float("nan")},
        {"optimizer": "sgd"},
        {"weight_decay": -0.1},
        {"weight_decay": float("nan")},
        {"eval_every": 0},
        {"patience": -1},
        {"time_limit_minutes": 0.0},
        {"time_limit_minutes": -1.0},
        {"time_limit_minutes": float("nan")},
        {"time_limit_minutes": float("inf")},
        {"time_check": "step"},
        {"max_grad_norm": 0.0},
        {"max_grad_norm": float("nan")},
        {"max_grad_norm": 1.0, "optimizer": "sparse_adam"},
        {"decay_matrices_only": True},  # Adam has no decay to restrict
    ],
)
def test_bad_config_is_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ClrecError):
        LoopConfig(**settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- logs, optimiser
def test_tensorboard_logs_every_loss_part_and_metric(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = _module()
    log_dir = tmp_path / "logs"
    config = _config(epochs=3, log_dir=str(log_dir))
    run_training(module, _epoch_batches, _loss_fn(module), config, validate=_validator(module))
    assert list(log_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "mse", "mae", "ndcg@10", "recall@20"} <= tags
    steps = [event.step for event in events.Scalars("loss")]
    assert steps == [1, 2, 3]


def test_adamw_decays_weights_that_adam_leaves_alone() -> None:
    def train(optimizer: str) -> nn.Linear:
        module = _module()

        def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
            return (module(X[index]) * 0.0).sum(), {}

        config = _config(epochs=3, lr=0.01, optimizer=optimizer, weight_decay=0.5)
        run_training(module, _epoch_batches, batch_loss, config)
        return module

    start = _module()
    adam, adamw = train("adam"), train("adamw")
    assert torch.equal(adam.weight, start.weight) and torch.equal(adam.bias, start.bias)
    shrink = (1 - 0.01 * 0.5) ** 12  # 3 epochs × 4 steps
    torch.testing.assert_close(adamw.weight, start.weight * shrink)
    torch.testing.assert_close(adamw.bias, start.bias * shrink)


def test_decay_matrices_only_leaves_vectors_alone() -> None:
    module = _module()
    start = _module()

    def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        return (module(X[index]) * 0.0).sum(), {}

    config = _config(
        epochs=3, lr=0.01, optimizer="adamw", weight_decay=0.5, decay_matrices_only=True
    )
    run_training(module, _epoch_batches, batch_loss, config)
    torch.testing.assert_close(module.weight, start.weight * (1 - 0.01 * 0.5) ** 12)
    assert torch.equal(module.bias, start.bias)  # (1,): a vector, not decayed


def test_lr_factor_scales_every_step_over_the_whole_run() -> None:
    module = _module()
    start = _module()

    def batch_loss(index: Tensor) -> tuple[Tensor, dict[str, float]]:
        return (module(X[index]) * 0.0).sum(), {}  # only AdamW's decay moves the weights

    config = _config(epochs=3, lr=0.01, optimizer="adamw", weight_decay=0.5)
    run_training(module, _epoch_batches, batch_loss, config, lr_factor=lambda s: 1 / (s + 1))
    shrink = math.prod(1 - 0.01 / (step + 1) * 0.5 for step in range(12))  # 3 epochs × 4 steps
    torch.testing.assert_close(module.weight, start.weight * shrink)


def test_max_grad_norm_clips_the_gradients_the_step_uses() -> None:
    def last_gradient_norm(max_grad_norm: float | None) -> float:
        module = _module()
        config = _config(epochs=1, max_grad_norm=max_grad_norm)
        run_training(module, _epoch_batches, _loss_fn(module), config)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))

    assert last_gradient_norm(None) > 0.5
    assert last_gradient_norm(0.5) == pytest.approx(0.5, rel=1e-5)
