"""Train LightFM's WARP hybrid on an exported split and save its scores (runs in the LightFM venv).

    bench/peers/.venvs/lightfm/bin/python bench/peers/lightfm_run.py EXPORT_DIR --out OUT_DIR

EXPORT_DIR is what ``clrec data export RUN --format lightfm`` wrote. The model sees the train
interactions and the item features (identity + words / tags / categories), 64-d, WARP loss,
as in ``../shared/ANCHORS.md``, for ``--epochs`` epochs (LightFM has no validation-based
stopping) or until ``--time-cap`` minutes have passed. Written to OUT_DIR: ``scores.npy``, the
scores of every user for every item, so clrec's own evaluator ranks them exactly as it ranks
clrec (``bench/peers/score.py``), and ``result.json`` with the epoch and scoring times. Only
numpy, scipy and lightfm are imported here: this file never touches the clrec package.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from lightfm import LightFM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--time-cap", type=float, default=None, help="minutes of training")
    parser.add_argument("--no-features", action="store_true", help="pure collaborative LightFM")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    train = sp.load_npz(args.export / "interactions_train.npz").tocoo()
    features = None if args.no_features else sp.load_npz(args.export / "item_features.npz")
    model = LightFM(no_components=args.dim, loss="warp", random_state=args.seed)
    started = time.perf_counter()
    epoch_seconds: list[float] = []
    for _ in range(args.epochs):
        begun = time.perf_counter()
        model.fit_partial(train, item_features=features, epochs=1, num_threads=args.threads)
        epoch_seconds.append(time.perf_counter() - begun)
        if args.time_cap is not None and time.perf_counter() - started > 60 * args.time_cap:
            break
    fit_seconds = time.perf_counter() - started

    begun = time.perf_counter()
    item_bias, item_vectors = model.get_item_representations(features)  # (I,), (I, D)
    _, user_vectors = model.get_user_representations()  # a user's bias never reorders items
    scores = (user_vectors @ item_vectors.T + item_bias[None, :]).astype(np.float32)  # (U, I)
    score_seconds = time.perf_counter() - begun
    np.save(args.out / "scores.npy", scores)
    result = {
        "library": "LightFM",
        "model": "WARP hybrid" if features is not None else "WARP",
        "epochs": len(epoch_seconds),
        "capped": len(epoch_seconds) < args.epochs,
        "time_cap_minutes": args.time_cap,
        "seconds_per_epoch": float(np.mean(epoch_seconds)),
        "seconds_to_score_all": score_seconds,
        "fit_seconds": fit_seconds,
        "threads": args.threads,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    n_users, n_items = train.shape
    print(f"LightFM: {n_users} x {n_items}, {len(epoch_seconds)} epochs, {fit_seconds:.1f}s")


if __name__ == "__main__":
    main()
