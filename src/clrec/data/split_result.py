"""A finished split: the train / valid / test frames and what it guarantees.

A :class:`Split` says in plain English what it guarantees (:meth:`Split.summary`), re-checks
those guarantees on its own data (:meth:`Split.verify`), and saves to / loads from a folder
of Parquet files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clrec.data.schema import INTERACTION_DTYPES, Dataset
from clrec.data.split_config import PARTS, TEST, VALID, SplitConfig, ratio_counts
from clrec.errors import DataError
from clrec.manifest import read_manifest

SPLIT_FORMAT_VERSION = 1


@dataclass
class Split:
    """Train / valid / test interaction frames plus what was held out cold.

    The frames have the columns of ``dataset.interactions`` and keep its row order.
    ``*_cold_items`` / ``*_cold_users`` hold sorted internal ids for the cold schemes and
    are ``None`` otherwise.
    """

    config: SplitConfig
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    dataset_name: str = ""
    valid_cold_items: np.ndarray | None = None
    test_cold_items: np.ndarray | None = None
    valid_cold_users: np.ndarray | None = None
    test_cold_users: np.ndarray | None = None

    def parts(self) -> dict[str, pd.DataFrame]:
        """``{"train": ..., "valid": ..., "test": ...}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    # ------------------------------------------------------------------ description
    def guarantees(self) -> list[str]:
        """Plain-English statements this split makes true; :meth:`verify` checks each."""
        items = [
            "no (user, item) pair appears in more than one part (nor twice in one part)",
            "together the parts hold every interaction of the data set exactly once "
            "(checked when verify() is given the data set)",
        ]
        scheme = self.config.scheme
        if scheme == "random":
            items.append(
                "each user's interactions are shuffled and cut by the ratios with RecBole's "
                "rule: valid and test get int(ratio × n) each, raised to 1 when ratio × n is "
                "below 1 while train keeps more than one"
            )
        elif scheme == "loo":
            items += [
                "each user with 3 or more interactions has exactly one test interaction (their "
                "latest) and one valid interaction (their second latest); users with fewer "
                "are wholly in train",
                "no user's valid or test interaction is earlier than any of their train "
                "interactions, and no test interaction is earlier than the user's valid one",
            ]
        elif scheme == "temporal":
            items += [
                "no valid interaction is earlier than any train interaction",
                "no test interaction is earlier than any train or valid interaction",
            ]
        elif scheme in ("cold-item", "cold-user"):
            kind = "item" if scheme == "cold-item" else "user"
            items += [
                f"no valid or test {kind} appears in train (they are cold)",
                f"valid and test {kind}s are disjoint",
                f"each cold {kind} has all its interactions in its own part",
            ]
        elif scheme == "predefined":
            items.append("each part holds exactly the rows the data set's split column marks")
        return items

    def summary(self) -> dict[str, Any]:
        """Sizes per part, cold and unseen counts, and the guarantees (JSON-ready).

        ``sizes[part]`` (part: train / valid / test / total) holds ``interactions``,
        ``users`` and ``items`` counts; ``cold`` the number of cold ids per part (cold
        schemes only); ``unseen_in_train`` the valid / test users and items absent from train.
        """
        parts = self.parts()
        all_users = np.unique(np.concatenate([column_ids(f, "user") for f in parts.values()]))
        all_items = np.unique(np.concatenate([column_ids(f, "item") for f in parts.values()]))
        train_users = np.unique(column_ids(self.train, "user"))
        train_items = np.unique(column_ids(self.train, "item"))

        def unseen(frame: pd.DataFrame, column: str, seen: np.ndarray) -> int:
            present = np.unique(column_ids(frame, column))
            return int((~np.isin(present, seen)).sum())

        cold: dict[str, int] = {}
        for name in ("valid_cold_items", "test_cold_items", "valid_cold_users", "test_cold_users"):
            value = getattr(self, name)
            if value is not None:
                cold[name] = len(value)
        return {
            "dataset": self.dataset_name,
            **self.config.to_dict(),
            "sizes": {
                **{
                    n: {
                        "interactions": len(f),
                        "users": int(f["user"].nunique()),
                        "items": int(f["item"].nunique()),
                    }
                    for n, f in parts.items()
                },
                "total": {
                    "interactions": sum(len(f) for f in parts.values()),
                    "users": len(all_users),
                    "items": len(all_items),
                },
            },
            "cold": cold,
            "unseen_in_train": {
                "valid_users": unseen(self.valid, "user", train_users),
                "test_users": unseen(self.test, "user", train_users),
                "valid_items": unseen(self.valid, "item", train_items),
                "test_items": unseen(self.test, "item", train_items),
            },
            "guarantees": self.guarantees(),
        }

    # ------------------------------------------------------------------ checks
    def verify(self, dataset: Dataset | None = None) -> None:
        """Re-check every guarantee on the frames; raise :class:`DataError` on the first miss.

        With ``dataset`` also check that the parts are exactly its interactions, split.
        """
        parts = self.parts()
        columns = list(self.train.columns)
        for name, frame in parts.items():
            if list(frame.columns) != columns:
                raise DataError(
                    f"split part {name!r} has columns {list(frame.columns)}, train has {columns}"
                )
        users = np.concatenate([column_ids(f, "user") for f in parts.values()])
        items = np.concatenate([column_ids(f, "item") for f in parts.values()])
        keys = users * (int(items.max(initial=0)) + 1) + items  # (n,) one int per pair
        unique_keys, first = np.unique(keys, return_index=True)
        if len(unique_keys) != len(keys):
            row = int(np.setdiff1d(np.arange(len(keys)), first)[0])
            raise DataError(
                "split leaks: some (user, item) pair appears in more than one part "
                f"(first: user {int(users[row])}, item {int(items[row])})"
            )
        if dataset is not None:
            self._verify_partition(dataset)
        scheme = self.config.scheme
        if scheme == "random":
            self._verify_random()
        elif scheme == "loo":
            self._verify_loo()
        elif scheme == "temporal":
            self._verify_temporal()
        elif scheme == "cold-item":
            self._verify_cold("item", self.valid_cold_items, self.test_cold_items)
        elif scheme == "cold-user":
            self._verify_cold("user", self.valid_cold_users, self.test_cold_users)
        elif scheme == "predefined":
            for name, frame in parts.items():
                if "split" in frame.columns and (frame["split"] != name).any():
                    raise DataError(f"split part {name!r} holds rows marked otherwise")

    def _verify_partition(self, dataset: Dataset) -> None:
        whole = pd.concat(list(self.parts().values()), ignore_index=True)
        source = dataset.interactions
        if len(whole) != len(source) or list(whole.columns) != list(source.columns):
            raise DataError(
                f"split parts hold {len(whole)} interactions with columns "
                f"{list(whole.columns)}; the data set has {len(source)} with "
                f"{list(source.columns)}"
            )
        a = whole.sort_values(["user", "item"], kind="stable").reset_index(drop=True)
        b = source.sort_values(["user", "item"], kind="stable").reset_index(drop=True)
        if not a.equals(b):
            raise DataError("split parts are not exactly the data set's interactions")

    def _verify_random(self) -> None:
        sizes = [np.bincount(column_ids(f, "user")) for f in self.parts().values()]
        width = max(len(s) for s in sizes)
        per_part = np.stack([np.pad(s, (0, width - len(s))) for s in sizes], axis=1)  # (u, 3)
        totals = per_part.sum(axis=1)
        present = totals > 0
        expected = ratio_counts(totals[present], self.config.ratios)
        bad = np.flatnonzero((per_part[present] != expected).any(axis=1))
        if len(bad):
            user = int(np.flatnonzero(present)[bad[0]])
            raise DataError(
                f"user {user} is split {per_part[user].tolist()} (train/valid/test), the "
                f"ratio rule gives {expected[bad[0]].tolist()}"
            )

    def _verify_loo(self) -> None:
        for name in PARTS:
            if "timestamp" not in self.parts()[name].columns:
                raise DataError("a leave-one-out split needs a timestamp column")
        sizes = [np.bincount(column_ids(f, "user")) for f in self.parts().values()]
        width = max(len(s) for s in sizes)
        per_part = np.stack([np.pad(s, (0, width - len(s))) for s in sizes], axis=1)  # (u, 3)
        totals = per_part.sum(axis=1)
        big = totals >= 3
        expected_held = big.astype(np.int64)
        wrong = (per_part[:, VALID] != expected_held) | (per_part[:, TEST] != expected_held)
        if wrong.any():
            user = int(np.flatnonzero(wrong)[0])
            raise DataError(
                f"user {user} has {int(totals[user])} interactions but "
                f"{int(per_part[user, VALID])} valid and {int(per_part[user, TEST])} test; "
                "leave-one-out holds out one each from users with 3 or more"
            )
        latest_train = self.train.groupby("user")["timestamp"].max()
        valid_time = self.valid.set_index("user")["timestamp"]
        test_time = self.test.set_index("user")["timestamp"]
        held_users = valid_time.index
        late = latest_train.reindex(held_users).to_numpy()
        if (valid_time.to_numpy() < late).any() or (
            test_time.reindex(held_users).to_numpy() < valid_time.to_numpy()
        ).any():
            raise DataError("a user's held-out interaction is earlier than one they kept")

    def _verify_temporal(self) -> None:
        if "timestamp" not in self.train.columns:
            raise DataError("a temporal split needs a timestamp column")
        train_t = self.train["timestamp"].to_numpy()
        valid_t = self.valid["timestamp"].to_numpy()
        test_t = self.test["timestamp"].to_numpy()
        if len(valid_t) and len(train_t) and valid_t.min() < train_t.max():
            raise DataError(
                f"temporal split leaks: a valid interaction at {valid_t.min()} is earlier "
                f"than a train interaction at {train_t.max()}"
            )
        before = np.concatenate([train_t, valid_t])
        if len(test_t) and len(before) and test_t.min() < before.max():
            raise DataError(
                f"temporal split leaks: a test interaction at {test_t.min()} is earlier "
                f"than a train or valid interaction at {before.max()}"
            )

    def _verify_cold(
        self, column: str, valid_cold: np.ndarray | None, test_cold: np.ndarray | None
    ) -> None:
        if valid_cold is None or test_cold is None:
            raise DataError(f"a cold-{column} split has no cold {column} lists")
        train_ids = np.unique(column_ids(self.train, column))
        valid_ids = np.unique(column_ids(self.valid, column))
        test_ids = np.unique(column_ids(self.test, column))
        for name, ids in (("valid", valid_ids), ("test", test_ids)):
            leaked = np.intersect1d(ids, train_ids)
            if len(leaked):
                raise DataError(
                    f"cold-{column} split leaks: {len(leaked)} {name} {column}(s) also in "
                    f"train (first: {int(leaked[0])})"
                )
        both = np.intersect1d(valid_ids, test_ids)
        if len(both):
            raise DataError(
                f"cold-{column} split: {len(both)} {column}(s) in both valid and test "
                f"(first: {int(both[0])})"
            )
        if not np.array_equal(valid_ids, np.sort(valid_cold)) or not np.array_equal(
            test_ids, np.sort(test_cold)
        ):
            raise DataError(
                f"cold-{column} split: the cold {column} lists do not match the {column}s "
                "found in valid and test"
            )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``train/valid/test.parquet`` and ``split.json`` (config, summary, cold ids)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in self.parts().items():
            frame.to_parquet(out / f"{name}.parquet", index=False)
        cold = {
            name: None if getattr(self, name) is None else getattr(self, name).tolist()
            for name in (
                "valid_cold_items",
                "test_cold_items",
                "valid_cold_users",
                "test_cold_users",
            )
        }
        meta = {
            "format_version": SPLIT_FORMAT_VERSION,
            "dataset": self.dataset_name,
            "config": self.config.to_dict(),
            "summary": self.summary(),
            "cold": cold,
        }
        (out / "split.json").write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Split:
        """Read a split written by :meth:`save`; refuses a folder that is not one."""
        root = Path(directory)
        meta = read_manifest(root, "split.json", "format_version", SPLIT_FORMAT_VERSION)
        frames: dict[str, pd.DataFrame] = {}
        for name in PARTS:
            path = root / f"{name}.parquet"
            if not path.is_file():
                raise DataError(f"saved split has no {name}.parquet", file=root)
            frame = pd.read_parquet(path)
            known = {c: INTERACTION_DTYPES[c] for c in frame.columns if c in INTERACTION_DTYPES}
            frames[name] = frame.astype(known).reset_index(drop=True)

        def cold(name: str) -> np.ndarray | None:
            value = meta["cold"].get(name)
            return None if value is None else np.asarray(value, dtype=np.int64)

        return cls(
            config=SplitConfig.from_dict(meta["config"]),
            train=frames["train"],
            valid=frames["valid"],
            test=frames["test"],
            dataset_name=str(meta.get("dataset", "")),
            valid_cold_items=cold("valid_cold_items"),
            test_cold_items=cold("test_cold_items"),
            valid_cold_users=cold("valid_cold_users"),
            test_cold_users=cold("test_cold_users"),
        )


def column_ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    """One integer column of a part (user, item or timestamp) as an int64 array."""
    ids: np.ndarray = frame[column].to_numpy(dtype=np.int64)
    return ids
