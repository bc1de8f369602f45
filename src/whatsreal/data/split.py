"""The train/validation split, by pair, seeded and saved so every later stage uses the same one."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_split"]


def make_split(n_pairs: int, val_fraction: float, seed: int) -> pd.DataFrame:
    """``pair`` and ``split`` ('train' / 'val'): a seeded random ``val_fraction`` of pairs is held out."""
    if n_pairs < 2:
        raise ValueError(f"need at least 2 pairs to split, got {n_pairs}")
    n_val = min(max(1, round(val_fraction * n_pairs)), n_pairs - 1)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n_pairs, dtype=bool)
    is_val[rng.choice(n_pairs, size=n_val, replace=False)] = True
    return pd.DataFrame({"pair": np.arange(n_pairs, dtype=np.int64), "split": np.where(is_val, "val", "train")})
