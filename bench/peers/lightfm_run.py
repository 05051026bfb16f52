"""Train LightFM's WARP hybrid on an exported split and save its scores (runs in the LightFM venv).

    bench/peers/.venvs/lightfm/bin/python bench/peers/lightfm_run.py EXPORT_DIR --out SCORES.npz

EXPORT_DIR is what ``clrec data export RUN --format lightfm`` wrote. The model sees the train
interactions and the item features (identity + words / tags / categories), 64-d, WARP loss,
as in ``../shared/ANCHORS.md``; the scores of every user for every item are saved, so clrec's
own evaluator ranks them exactly as it ranks clrec (``bench/peers/score.py``). Only numpy,
scipy and lightfm are imported here: this file never touches the clrec package.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--no-features", action="store_true", help="pure collaborative LightFM")
    args = parser.parse_args()

    train = sp.load_npz(args.export / "interactions_train.npz").tocoo()
    features = None if args.no_features else sp.load_npz(args.export / "item_features.npz")
    model = LightFM(no_components=args.dim, loss="warp", random_state=args.seed)
    started = time.perf_counter()
    model.fit(train, item_features=features, epochs=args.epochs, num_threads=args.threads)
    fit_seconds = time.perf_counter() - started

    n_users, n_items = train.shape
    item_bias, item_vectors = model.get_item_representations(features)  # (I,), (I, D)
    _, user_vectors = model.get_user_representations()  # a user's bias never reorders items
    scores = (user_vectors @ item_vectors.T + item_bias[None, :]).astype(np.float32)  # (U, I)
    np.savez_compressed(args.out, scores=scores, fit_seconds=fit_seconds)
    print(f"LightFM: {n_users} users x {n_items} items, {args.epochs} epochs in {fit_seconds:.1f}s")


if __name__ == "__main__":
    main()
