"""Sparse user × item matrices from interaction tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def interaction_matrix(interactions: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary (n_users, n_items) CSR matrix with a 1 for every (user, item) row."""
    users = interactions["user"].to_numpy(dtype=np.int64)
    items = interactions["item"].to_numpy(dtype=np.int64)
    return binary_matrix(users, items, n_users, n_items)


def binary_matrix(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """Binary (n_users, n_items) CSR matrix with a 1 at every ``(users[i], items[i])``
    (repeated pairs count once)."""
    values = np.ones(len(users), dtype=np.float32)
    matrix = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
