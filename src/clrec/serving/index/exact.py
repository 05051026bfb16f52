"""Exact top-k search: every item scored with a chunked torch matmul and a running top-k
merge, so peak memory is about ``Q * chunk * 4`` bytes whatever the catalogue size."""

from __future__ import annotations

import numpy as np
import torch


def exact_topk(
    queries: np.ndarray,
    store: np.ndarray,
    scales: np.ndarray | None,
    k: int,
    chunk: int,
    candidates: np.ndarray | None,
    excl_rows: np.ndarray,
    excl_cols: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``queries`` ``(Q, D)`` against ``store`` ``(I, D)``, chunk by chunk.

    Only items in ``candidates`` (sorted ids) are scored when given; ``(excl_rows,
    excl_cols)`` pairs are masked to -inf. Each chunk's top-k merges into a running top-k,
    so memory is ``O(Q * chunk)``. Returns ids ``(Q, k)`` (-1 padded) and scores ``(Q, k)``.
    """
    n_q = queries.shape[0]
    total = store.shape[0] if candidates is None else len(candidates)
    # Exclusions in candidate positions, sorted so each chunk finds its slice by bisection.
    rows, pos = excl_rows, excl_cols
    if candidates is not None and len(pos):
        at = np.searchsorted(candidates, pos)  # (E,)
        inside = at < len(candidates)
        inside[inside] = candidates[at[inside]] == pos[inside]
        rows, pos = rows[inside], at[inside]
    order = np.argsort(pos, kind="stable")
    rows, pos = rows[order], pos[order]  # (E,), (E,)

    q_t = torch.from_numpy(queries)  # (Q, D)
    best_scores = torch.full((n_q, k), -torch.inf, dtype=torch.float32)  # (Q, k)
    best_ids = torch.full((n_q, k), -1, dtype=torch.int64)  # (Q, k)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        if candidates is None:
            block = store[start:stop]  # (C, D)
            block_ids = torch.arange(start, stop, dtype=torch.int64)  # (C,)
            block_scales = None if scales is None else scales[start:stop]  # (C,)
        else:
            chunk_ids = candidates[start:stop]  # (C,)
            block = store[chunk_ids]  # (C, D)
            block_ids = torch.from_numpy(chunk_ids)
            block_scales = None if scales is None else scales[chunk_ids]  # (C,)
        block_t = torch.from_numpy(np.ascontiguousarray(block)).to(torch.float32)  # (C, D)
        chunk_scores = q_t @ block_t.T  # (Q, C)
        if block_scales is not None:
            chunk_scores *= torch.from_numpy(np.ascontiguousarray(block_scales))[None, :]
        lo, hi = np.searchsorted(pos, [start, stop])
        if hi > lo:
            hit_rows = torch.from_numpy(rows[lo:hi])  # (H,)
            hit_cols = torch.from_numpy(pos[lo:hi] - start)  # (H,)
            chunk_scores[hit_rows, hit_cols] = -torch.inf
        top = torch.topk(chunk_scores, k=min(k, stop - start), dim=1)  # (Q, kc) each
        merged_scores = torch.cat([best_scores, top.values], dim=1)  # (Q, k + kc)
        merged_ids = torch.cat([best_ids, block_ids[top.indices]], dim=1)  # (Q, k + kc)
        keep = torch.topk(merged_scores, k=k, dim=1)  # (Q, k) each
        best_scores = keep.values
        best_ids = torch.gather(merged_ids, 1, keep.indices)
    ids = best_ids.numpy().copy()  # (Q, k)
    out_scores = best_scores.numpy().copy()  # (Q, k)
    ids[np.isneginf(out_scores)] = -1
    return ids, out_scores


__all__ = ["exact_topk"]
