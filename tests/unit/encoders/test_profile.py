"""User profile matrix: hand-computed pooling on a toy, text modes, incremental = rebuild."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clrec.encoders.profile import UserProfileConfig, UserProfiles, build_user_profiles
from clrec.errors import ClrecError, DataError

DAY = 86_400
NAN = np.nan

# Items: i0 = x axis, i1 = y axis, i2 has no vector, i3 = diagonal.
ITEMS = np.array([[1, 0], [0, 1], [NAN, NAN], [1, 1]], dtype=np.float32)  # (4, 2)
# u0 saw i0 then i1 ten days later; u1 saw only the vector-less i2; u2 saw i0 then i3.
TOY = pd.DataFrame(
    {
        "user": [0, 0, 1, 2, 2],
        "item": [0, 1, 2, 0, 3],
        "timestamp": [0, 10 * DAY, 5 * DAY, 0, 10 * DAY],
    }
)
TEXT = np.array([[NAN, NAN], [0, 2], [2, 0]], dtype=np.float32)  # (3, 2): u0 has no text


def test_mean_pooling_by_hand() -> None:
    config = UserProfileConfig(pooling="mean", include_profile_text="none")
    profiles = build_user_profiles(TOY, ITEMS, 3, config)
    expected = [[0.5, 0.5], [0.0, 0.0], [1.0, 0.5]]
    np.testing.assert_allclose(profiles.matrix, expected, rtol=1e-6)
    assert profiles.matrix.dtype == np.float32
    assert profiles.has_history.tolist() == [True, False, True]
    assert profiles.has_profile.tolist() == [True, False, True]
    assert profiles.n_history.tolist() == [2, 0, 2]  # the NaN item is ignored


def test_recency_pooling_by_hand() -> None:
    # Half-life 10 days: the interaction 10 days before the user's latest weighs 0.5.
    config = UserProfileConfig(pooling="recency", half_life_days=10, include_profile_text="none")
    profiles = build_user_profiles(TOY, ITEMS, 3, config)
    u0 = (0.5 * np.array([1, 0]) + np.array([0, 1])) / 1.5
    u2 = (0.5 * np.array([1, 0]) + np.array([1, 1])) / 1.5
    np.testing.assert_allclose(profiles.matrix, [u0, [0, 0], u2], rtol=1e-6)


def test_recency_reference_time_does_not_matter() -> None:
    config = UserProfileConfig(pooling="recency", half_life_days=10, include_profile_text="none")
    shifted = TOY.assign(timestamp=TOY["timestamp"] + 1_000_000 * DAY)
    a = build_user_profiles(TOY, ITEMS, 3, config).matrix
    b = build_user_profiles(shifted, ITEMS, 3, config).matrix
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_profile_text_concat_and_mean() -> None:
    concat = build_user_profiles(TOY, ITEMS, 3, UserProfileConfig(), TEXT)
    np.testing.assert_allclose(
        concat.matrix, [[0.5, 0.5, 0, 0], [0, 0, 0, 2], [1, 0.5, 2, 0]], rtol=1e-6
    )
    assert concat.has_text.tolist() == [False, True, True]
    assert concat.has_profile.tolist() == [True, True, True]

    mean = build_user_profiles(TOY, ITEMS, 3, UserProfileConfig(include_profile_text="mean"), TEXT)
    # One part → that part; both → their average.
    np.testing.assert_allclose(mean.matrix, [[0.5, 0.5], [0, 2], [1.5, 0.25]], rtol=1e-6)

    none = build_user_profiles(TOY, ITEMS, 3, UserProfileConfig(include_profile_text="none"), TEXT)
    assert none.matrix.shape == (3, 2)
    assert none.has_profile.tolist() == [True, False, True]


def test_normalize_rows() -> None:
    config = UserProfileConfig(include_profile_text="none", normalize=True)
    matrix = build_user_profiles(TOY, ITEMS, 4, config).matrix
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), [1, 0, 1, 0], rtol=1e-6)


def test_users_without_interactions_get_zero_rows() -> None:
    profiles = build_user_profiles(TOY, ITEMS, 5, UserProfileConfig())
    assert profiles.matrix.shape == (5, 2)
    assert not profiles.matrix[3:].any()
    assert profiles.has_profile.tolist() == [True, False, True, False, False]


def test_errors() -> None:
    with pytest.raises(ClrecError, match="timestamp"):
        build_user_profiles(TOY.drop(columns="timestamp"), ITEMS, 3, UserProfileConfig("recency"))
    with pytest.raises(ClrecError, match="one width"):
        wide = np.zeros((3, 5), dtype=np.float32)
        build_user_profiles(TOY, ITEMS, 3, UserProfileConfig(include_profile_text="mean"), wide)
    with pytest.raises(DataError, match="n_users"):
        build_user_profiles(TOY, ITEMS, 2, UserProfileConfig())
    with pytest.raises(DataError, match="items outside"):
        build_user_profiles(TOY.assign(item=[0, 1, 2, 0, 9]), ITEMS, 3, UserProfileConfig())
    with pytest.raises(ClrecError, match="half_life_days"):
        UserProfileConfig(half_life_days=0)


# --------------------------------------------------------------------------- incremental


def random_world(seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_users, n_items, dim = 40, 30, 6
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    items[rng.choice(n_items, 5, replace=False)] = np.nan
    text = rng.normal(size=(n_users, dim)).astype(np.float32)
    text[rng.choice(n_users, 10, replace=False)] = np.nan
    n = 600
    frame = pd.DataFrame(
        {
            "user": rng.integers(0, n_users, n),
            "item": rng.integers(0, n_items, n),
            "timestamp": rng.integers(0, 400 * DAY, n),
        }
    )
    return frame, items, text


def assert_same(a: UserProfiles, b: UserProfiles) -> None:
    np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.weighted_sum, b.weighted_sum, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.weight_total, b.weight_total, rtol=1e-9, atol=1e-12)
    assert (a.has_profile == b.has_profile).all()
    assert (a.n_history == b.n_history).all()


@pytest.mark.parametrize("pooling", ["mean", "recency"])
@pytest.mark.parametrize("text_mode", ["concat", "mean", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_incremental_update_equals_rebuild(pooling: str, text_mode: str, seed: int) -> None:
    frame, items, text = random_world(seed)
    config = UserProfileConfig(pooling, half_life_days=20, include_profile_text=text_mode)  # type: ignore[arg-type]
    # Random split, so new interactions are sometimes older than a user's latest old one.
    is_new = np.random.default_rng(seed + 100).random(len(frame)) < 0.3
    old, new = frame[~is_new], frame[is_new]
    incremental = build_user_profiles(old, items, 40, config, text)
    before = incremental.matrix.copy()
    touched = incremental.update(new)
    full = build_user_profiles(frame, items, 40, config, text)
    assert_same(incremental, full)
    assert touched.tolist() == sorted(new["user"].unique().tolist())
    untouched = np.setdiff1d(np.arange(40), touched)
    np.testing.assert_array_equal(incremental.matrix[untouched], before[untouched])


@pytest.mark.parametrize("pooling", ["mean", "recency"])
def test_update_in_several_steps_and_new_users(pooling: str) -> None:
    frame, items, _ = random_world(3)
    config = UserProfileConfig(pooling, half_life_days=7)  # type: ignore[arg-type]
    first = frame[frame["user"] < 30]
    later = frame[frame["user"] >= 30]
    profiles = build_user_profiles(first, items, 30, config)
    shuffled = later.sample(frac=1, random_state=0)
    for start in range(0, len(shuffled), 50):
        profiles.update(shuffled.iloc[start : start + 50])
    full = build_user_profiles(frame, items, 40, config)
    assert profiles.n_users == 40
    assert_same(profiles, full)


def test_update_with_new_item_vectors() -> None:
    grown = np.vstack([ITEMS, [[0, 3]]]).astype(np.float32)  # item 4 is new
    profiles = build_user_profiles(TOY, ITEMS, 3, UserProfileConfig(include_profile_text="none"))
    with pytest.raises(DataError):
        profiles.update(pd.DataFrame({"user": [1], "item": [4]}))
    profiles.update(pd.DataFrame({"user": [1], "item": [4]}), item_vectors=grown)
    np.testing.assert_allclose(profiles.matrix[1], [0, 3])
    assert profiles.update(pd.DataFrame({"user": [], "item": []})).size == 0
