"""Train one RecBole model on an exported clrec split; save its top-K lists and timings.

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 bench/peers/.venvs/recbole/bin/python \
        bench/peers/recbole_run.py EXPORT_DIR/NAME --model LightGCN --out OUT_DIR [--time-cap MIN]

EXPORT_DIR/NAME is what ``clrec data export RUN --format recbole`` wrote (its ``recbole.yaml``
points RecBole at clrec's own train / valid / test through ``benchmark_filename``). The model
trains with RecBole's own trainer and its published default hyper-parameters (SimGCL and
XSimGCL from ``recbole_gcl.py``), early-stopping on validation NDCG@10. Written to OUT_DIR:

* ``topk.npz`` — for every test user (external id) the ``--save-k`` best items (external ids)
  after RecBole's own masking of train + valid items, best first, so that clrec's evaluator
  can rank exactly what RecBole ranked (``bench/peers/score.py``);
* ``result.json`` — RecBole's own test metrics (the evaluator cross-check), epochs, seconds
  per training epoch and per full validation / test evaluation, time to the best validation
  NDCG@10 and whether the time cap stopped training (peak memory: ``measure.py`` around it).

Runs in the RecBole venv and never imports clrec.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import ModelType, get_model, get_trainer, init_seed  # noqa: E402
from recbole_gcl import CUSTOM_MODELS  # noqa: E402

# contrastive models need a long warm-up before validation improves (../shared/ANCHORS.md):
# they train the full epoch budget, keeping the best-validation checkpoint
NO_EARLY_STOP = {"SimGCL", "XSimGCL"}


class TimeCapError(Exception):
    """Raised at the start of an epoch once the training time cap has passed."""


class CappedBatches:
    """A RecBole train loader that stops yielding batches once ``deadline`` has passed, so
    the cap also ends an epoch that alone would outlast it (SGL, NCL on ML-1M, Gowalla)."""

    def __init__(self, loader: Any, deadline: float | None) -> None:
        self.loader = loader
        self.deadline = deadline
        self.yielded = 0

    def __iter__(self) -> Any:
        for batch in self.loader:
            if self.yielded and self.deadline is not None and time.perf_counter() > self.deadline:
                return
            self.yielded += 1
            yield batch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def timed_trainer(base: type, deadline: float | None) -> type:
    """``base`` (a RecBole trainer class) that records epoch / validation times and stops at
    ``deadline`` (a ``time.perf_counter`` value)."""

    class Timed(base):
        def __init__(self, config: Any, model: Any) -> None:
            super().__init__(config, model)
            self.started = time.perf_counter()
            self.train_seconds: list[float] = []
            self.valid_seconds: list[float] = []
            self.valid_curve: list[tuple[float, float]] = []  # (elapsed s, NDCG@10)
            self.cut_epochs = 0  # epochs the cap ended early (their time is extrapolated)

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            # at least one (possibly cut) epoch, so there is a checkpoint to test
            if self.train_seconds and deadline is not None and time.perf_counter() > deadline:
                raise TimeCapError
            begun = time.perf_counter()
            batches = CappedBatches(train_data, deadline)
            loss = super()._train_epoch(batches, epoch_idx, loss_func, show_progress)
            seconds = time.perf_counter() - begun
            if 0 < batches.yielded < len(batches):  # cut by the cap: a full epoch's time
                self.cut_epochs += 1
                seconds *= len(batches) / batches.yielded
            self.train_seconds.append(seconds)
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            begun = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, show_progress)
            now = time.perf_counter()
            self.valid_seconds.append(now - begun)
            self.valid_curve.append((now - self.started, float(score)))
            return score, result

    return Timed


def config_for(args: argparse.Namespace) -> Config:
    """RecBole's config: the export's fragment, the protocol, the model's defaults."""
    model: Any = args.model
    overrides: dict[str, Any] = {}
    if args.model in CUSTOM_MODELS:
        model, defaults = CUSTOM_MODELS[args.model]
        overrides.update(defaults)
    overrides.update(
        {
            "seed": args.seed,
            "reproducibility": True,
            "epochs": args.epochs,
            "stopping_step": args.epochs if args.model in NO_EARLY_STOP else args.patience,
            "eval_args": {"mode": "full", "order": "RO", "group_by": "user"},
            "metrics": ["Recall", "NDCG", "MRR", "Hit"],
            "topk": [10, 20],
            "valid_metric": "NDCG@10",
            "eval_batch_size": 4096,
            "metric_decimal_place": 6,
            "train_batch_size": args.batch_size,
            "show_progress": False,
            "checkpoint_dir": str(args.out / "saved"),
            "worker": 0,
        }
    )
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    return Config(
        model=model,
        config_file_list=[str(args.export / "recbole.yaml")],
        config_dict=overrides,
    )


def save_topk(trainer: Any, test_data: Any, dataset: Any, k: int, path: Path) -> None:
    """Every test user's ``k`` best unseen items (external ids), as RecBole ranks them."""
    user_field, item_field = dataset.uid_field, dataset.iid_field
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    model = trainer.model
    model.eval()
    with torch.no_grad():
        for interaction, history_index, _, _ in test_data:
            scores = model.full_sort_predict(interaction.to(model.device))
            scores = scores.view(-1, dataset.item_num)  # (B, I + 1): id 0 is padding
            scores[:, 0] = -np.inf
            if history_index is not None:
                scores[history_index] = -np.inf
            top = torch.topk(scores, k, dim=1).indices.cpu().numpy()  # (B, k)
            users.append(interaction[user_field].cpu().numpy())
            items.append(top)
    user_ids = np.concatenate(users)
    item_ids = np.concatenate(items)
    np.savez_compressed(
        path,
        users=np.asarray(dataset.id2token(user_field, user_ids), dtype=str),
        items=np.asarray(dataset.id2token(item_field, item_ids.ravel()), dtype=str).reshape(
            item_ids.shape
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="EXPORT_DIR/NAME holding recbole.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=300)
    # RecBole's own default is 10; its graph models dip on validation for their first ~25
    # epochs (LightGCN on ml-latest-small stopped at epoch 12 with its best at 2), so 50
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-cap", type=float, default=None, help="minutes of training")
    # RecBole's own largest cut-off: torch.topk with another k may order tied scores
    # differently, and the evaluator cross-check compares exactly RecBole's own lists
    parser.add_argument("--save-k", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], help="KEY=JSON override")
    args = parser.parse_args()
    args.export = args.export.resolve()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    os.chdir(args.out)  # RecBole writes its log/ and saved/ folders relative to here
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    began = time.perf_counter()
    config = config_for(args)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if args.model == "NCL":
        # NCL's k-means wants fewer prototypes (default 1000) than users and items
        config["num_clusters"] = min(
            config["num_clusters"], dataset.user_num - 1, dataset.item_num - 1
        )
    init_seed(config["seed"], config["reproducibility"])
    model_class = (
        CUSTOM_MODELS[args.model][0] if args.model in CUSTOM_MODELS else get_model(args.model)
    )
    init_began = time.perf_counter()
    model = model_class(config, train_data._dataset).to(config["device"])
    # closed-form models (EASE) solve their whole system while being built
    init_seconds = time.perf_counter() - init_began
    deadline = None if args.time_cap is None else time.perf_counter() + 60 * args.time_cap
    trainer = timed_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), deadline)(
        config, model
    )
    capped = False
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    except TimeCapError:
        capped = True
    test_began = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True)
    test_seconds = time.perf_counter() - test_began
    save_topk(trainer, test_data, dataset, args.save_k, args.out / "topk.npz")

    curve = trainer.valid_curve
    best = max(range(len(curve)), key=lambda i: curve[i][1]) if curve else None
    result = {
        "library": "RecBole",
        "model": args.model,
        "epochs": len(trainer.train_seconds),
        "best_epoch": None if best is None else best + 1,
        "capped": capped or trainer.cut_epochs > 0,
        "cut_epochs": trainer.cut_epochs,
        "time_cap_minutes": args.time_cap,
        "model_init_seconds": init_seconds,
        # a closed-form model's one "epoch" is its construction plus that epoch
        "seconds_per_epoch": float(np.mean(trainer.train_seconds))
        + (init_seconds if config["MODEL_TYPE"] == ModelType.TRADITIONAL else 0.0),
        "seconds_per_valid": float(np.mean(trainer.valid_seconds)) if curve else None,
        "seconds_per_test_eval": test_seconds,
        "seconds_to_best": None if best is None else curve[best][0] + init_seconds,
        "fit_seconds": test_began - trainer.started,
        "total_seconds": time.perf_counter() - began,
        "own_test": {k: float(v) for k, v in test_result.items()},
        "threads": args.threads,
        "overrides": args.set,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("model", "epochs", "capped", "own_test")}))


if __name__ == "__main__":
    main()
