"""Embedding cache: round trips, dimension checks, concurrent writers, kill -9 mid-write."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from clrec.encoders.cache import DB_NAME, EmbeddingCache, blob_digest, content_hash
from clrec.errors import ClrecError

IDENTITY = "text:test@0:len8"


def test_content_hash_is_sha256_of_utf8() -> None:
    assert content_hash("abc") == content_hash(b"abc")
    assert content_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert content_hash("é") != content_hash("e")


def test_round_trip_and_misses(tmp_path: Path) -> None:
    vectors = {content_hash(t): np.arange(4, dtype=np.float32) + i for i, t in enumerate("abc")}
    with EmbeddingCache(tmp_path) as cache:
        assert cache.get_many(IDENTITY, list(vectors)) == {}
        cache.put_many(IDENTITY, vectors)
        assert cache.dim(IDENTITY) == 4 and cache.count(IDENTITY) == 3
    with EmbeddingCache(tmp_path) as cache:  # persisted
        wanted = [*vectors, content_hash("missing")]
        got = cache.get_many(IDENTITY, wanted)
        assert set(got) == set(vectors)
        for key, vector in vectors.items():
            assert got[key].dtype == np.float32
            np.testing.assert_array_equal(got[key], vector)
        # Another identity (other settings) never sees these vectors.
        assert cache.get_many(IDENTITY + ":cls", list(vectors)) == {}


def test_many_keys_are_read_in_chunks(tmp_path: Path) -> None:
    vectors = {f"h{i}": np.full(2, i, dtype=np.float32) for i in range(1_300)}
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(IDENTITY, vectors)
        assert len(cache.get_many(IDENTITY, list(vectors))) == 1_300


def test_dimension_is_checked_on_write_and_on_read(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(IDENTITY, {"a": np.zeros(4, np.float32)})
        with pytest.raises(ClrecError, match="4-d"):
            cache.put_many(IDENTITY, {"b": np.zeros(3, np.float32)})
        with pytest.raises(ClrecError, match="mixed"):
            cache.put_many("other", {"c": np.zeros(3), "d": np.zeros(2)})
        assert cache.count() == 1  # the failed transactions left nothing behind
    # A row whose bytes disagree with its dimension is never served.
    with sqlite3.connect(tmp_path / DB_NAME) as raw:
        raw.execute("UPDATE vectors SET vector = ? WHERE hash = 'a'", (b"\x00" * 12,))
    with EmbeddingCache(tmp_path) as cache:
        assert cache.get_many(IDENTITY, ["a"]) == {}


def test_a_damaged_vector_is_never_served_and_is_encoded_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes of the right length but the wrong values (what the size check alone let
    through: values ~1e37, an infinite norm), a NaN stored by a stray writer, and an entry
    from a cache written before digests all read as missing, with a warning."""
    good = np.arange(4, dtype=np.float32)
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(IDENTITY, {k: good for k in ("a", "b", "c", "d")})
        cache.put_many(IDENTITY, {"nan": np.array([1, np.nan, 0, 0], np.float32)})
        assert cache.count(IDENTITY) == 4  # a non-finite vector is never stored
    huge = np.full(4, 3e37, dtype=np.float32).tobytes()
    with sqlite3.connect(tmp_path / DB_NAME) as raw:
        raw.execute("UPDATE vectors SET vector = ? WHERE hash = 'a'", (huge,))
        raw.execute(
            "UPDATE vectors SET vector = ?, digest = ? WHERE hash = 'b'",
            (
                np.array([np.inf, 0, 0, 0], np.float32).tobytes(),
                blob_digest(np.array([np.inf, 0, 0, 0], np.float32).tobytes()),
            ),
        )
        raw.execute("UPDATE vectors SET digest = NULL WHERE hash = 'c'")
    with EmbeddingCache(tmp_path) as cache, caplog.at_level("WARNING"):
        got = cache.get_many(IDENTITY, ["a", "b", "c", "d"])
        assert list(got) == ["d"]
        np.testing.assert_array_equal(got["d"], good)
        assert "3 cached vector(s) failed their checks" in caplog.text
        cache.put_many(IDENTITY, {"a": good})  # encoded again: served from now on
        assert set(cache.get_many(IDENTITY, ["a"])) == {"a"}


def test_a_cache_from_before_digests_is_upgraded(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as raw:
        raw.executescript(
            "CREATE TABLE identities (identity TEXT PRIMARY KEY, dim INTEGER NOT NULL);"
            "CREATE TABLE vectors (identity TEXT NOT NULL, hash TEXT NOT NULL, "
            "dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (identity, hash)) "
            "WITHOUT ROWID;"
        )
        raw.execute("INSERT INTO identities VALUES (?, 2)", (IDENTITY,))
        raw.execute(
            "INSERT INTO vectors VALUES (?, 'old', 2, ?)",
            (IDENTITY, np.ones(2, np.float32).tobytes()),
        )
    with EmbeddingCache(tmp_path) as cache:
        assert cache.get_many(IDENTITY, ["old"]) == {}  # unverifiable: encoded again
        cache.put_many(IDENTITY, {"old": np.ones(2, np.float32)})
        assert set(cache.get_many(IDENTITY, ["old"])) == {"old"}


def test_a_file_that_is_not_a_database_raises_clrec_error(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ClrecError, match="embedding cache"):
        EmbeddingCache(tmp_path)


def test_closed_cache_raises(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.close()
    with pytest.raises(ClrecError, match="closed"):
        cache.get_many(IDENTITY, ["a"])


# --------------------------------------------------------------------------- concurrency

WRITERS = 4
ROUNDS = 15
PER_ROUND = 40


def _writer(directory: str, worker: int) -> None:
    with EmbeddingCache(directory) as cache:
        for round_ in range(ROUNDS):
            batch = {
                f"w{worker}-r{round_}-{j}": np.full(16, worker * 1000 + round_, np.float32)
                for j in range(PER_ROUND)
            }
            # Every writer also writes the same shared keys with the same values.
            batch |= {f"shared-{j}": np.full(16, -1.0, np.float32) for j in range(5)}
            cache.put_many(IDENTITY, batch)


def test_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).close()  # create the schema first, as a run would
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w)) for w in range(WRITERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    with EmbeddingCache(tmp_path) as cache:
        assert cache.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert cache.count(IDENTITY) == WRITERS * ROUNDS * PER_ROUND + 5
        keys = [
            f"w{w}-r{r}-{j}"
            for w in range(WRITERS)
            for r in range(ROUNDS)
            for j in range(PER_ROUND)
        ]
        got = cache.get_many(IDENTITY, keys)
        assert len(got) == len(keys)
        for key, vector in got.items():
            worker, round_ = int(key[1 : key.index("-")]), int(key.split("-")[1][1:])
            np.testing.assert_array_equal(vector, np.full(16, worker * 1000 + round_))


CRASH_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from clrec.encoders.cache import EmbeddingCache

    cache = EmbeddingCache(sys.argv[1])
    batch_size = int(sys.argv[2])
    i = 0
    while True:
        vectors = {f"b{i}-{j}": np.full(64, i, np.float32) for j in range(batch_size)}
        cache.put_many("crash", vectors)
        if i == 0:
            print("ready", flush=True)
        i += 1
    """
)


def test_kill_9_mid_write_leaves_only_complete_entries(tmp_path: Path) -> None:
    batch_size = 2_000  # large transactions, so the kill lands inside one
    process = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(tmp_path), str(batch_size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    with EmbeddingCache(tmp_path) as cache:
        assert cache.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [row[0] for row in cache.conn.execute("SELECT hash FROM vectors")]
        batches: dict[int, int] = {}
        for key in keys:
            number = int(key[1 : key.index("-")])
            batches[number] = batches.get(number, 0) + 1
        assert batches, "at least the first transaction committed"
        # Every committed batch is whole, and the batches form a prefix 0..k-1.
        assert set(batches.values()) == {batch_size}
        assert sorted(batches) == list(range(len(batches)))
        got = cache.get_many("crash", keys)
        assert len(got) == len(keys)
        for key, vector in got.items():
            assert vector.shape == (64,)
            assert np.all(vector == int(key[1 : key.index("-")]))
        # The cache is writable again after the crash.
        cache.put_many("crash", {"after": np.zeros(64, np.float32)})
