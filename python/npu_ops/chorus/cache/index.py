"""``NumpyIndex``: exact brute-force cosine search, grouped by compatibility class.

Exact and deterministic: vectors are re-normalised and scored in float64, and scores are rounded
to 1e-9 (``_DECIMALS``) so that vectors equal up to rounding tie whatever their row position in
the matrix; among equal scores an entry owned by the ``prefer`` tag (the requesting tenant, when
tenants share a group) wins, then the smallest entry id. Every worker that holds the same entries
thus returns the same match whatever order it learnt them in. Brute force costs about 9 ms per
query at 100k 384-d entries (docs/chorus_cache.md), negligible next to a video request.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["NumpyIndex"]

_DECIMALS = 9


class _Group:
    """Rows of one class: a growable float64 matrix plus row <-> id / owner maps (swap-remove)."""

    def __init__(self, dim: int) -> None:
        self.mat = np.empty((8, dim), dtype=np.float64)
        self.ids: list[str] = []
        self.owners: list[str | None] = []

    def add(self, entry_id: str, vec: np.ndarray, owner: str | None) -> None:
        n = len(self.ids)
        if n == self.mat.shape[0]:
            grown = np.empty((2 * n, self.mat.shape[1]), dtype=np.float64)
            grown[:n] = self.mat[:n]
            self.mat = grown
        self.mat[n] = vec
        self.ids.append(entry_id)
        self.owners.append(owner)

    def remove_row(self, row: int) -> str | None:
        """Remove ``row`` by moving the last row into it; returns the id that moved (if any)."""
        last = len(self.ids) - 1
        moved = None
        if row != last:
            self.mat[row] = self.mat[last]
            self.ids[row] = self.ids[last]
            self.owners[row] = self.owners[last]
            moved = self.ids[row]
        self.ids.pop()
        self.owners.pop()
        return moved


class NumpyIndex:
    """Exact cosine top-k within a group (a class digest). Not thread-safe: callers lock."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self._groups: dict[str, _Group] = {}
        self._where: dict[str, tuple[str, int]] = {}  # entry id -> (group, row)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    def ids(self) -> Iterator[str]:
        return iter(list(self._where))

    def add(self, entry_id: str, group: str, embedding: np.ndarray, owner: str | None = None) -> None:
        """Insert or replace ``entry_id``; ``embedding`` is a finite non-zero vector; ``owner`` is the
        tag ``search(prefer=...)`` favours among equal scores (the entry's tenant)."""
        vec = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if self.dim is None:
            self.dim = vec.size
        if vec.size != self.dim:
            raise ValueError(f"embedding must have dim {self.dim} (the index's), got {vec.size}")
        vec = vec / np.linalg.norm(vec)
        self.remove(entry_id)
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _Group(self.dim)
        self._where[entry_id] = (group, len(g.ids))
        g.add(entry_id, vec, owner)

    def remove(self, entry_id: str) -> bool:
        loc = self._where.pop(entry_id, None)
        if loc is None:
            return False
        group, row = loc
        g = self._groups[group]
        moved = g.remove_row(row)
        if moved is not None:
            self._where[moved] = (group, row)
        if not g.ids:
            del self._groups[group]
        return True

    def clear(self) -> None:
        self._groups.clear()
        self._where.clear()

    def search(
        self, group: str, query: np.ndarray, *, min_similarity: float = -np.inf, k: int = 1, prefer: str | None = None
    ):
        """Best ``k`` ``(entry_id, similarity)`` of ``group`` with similarity >= ``min_similarity``,
        best first; among equal scores entries owned by ``prefer`` first, then the smaller entry id."""
        g = self._groups.get(group)
        if g is None:
            return []
        q = np.asarray(query, dtype=np.float64).reshape(-1)
        if q.size != self.dim:
            raise ValueError(f"query embedding must have dim {self.dim} (the index's), got {q.size}")
        q = q / np.linalg.norm(q)
        n = len(g.ids)
        sims = np.round(np.clip(g.mat[:n] @ q, -1.0, 1.0), _DECIMALS)
        keep = np.nonzero(sims >= min_similarity)[0]
        if keep.size == 0:
            return []
        if keep.size > k:  # only the top k scores (and whatever ties the k-th) need the id tie-break
            kth = np.partition(sims[keep], keep.size - k)[keep.size - k]
            keep = keep[sims[keep] >= kth]
        # lexsort: last key is primary -> sort by -similarity, then not-preferred, then by id.
        ids = np.array([g.ids[i] for i in keep])
        foreign = np.array([prefer is None or g.owners[i] != prefer for i in keep])
        order = np.lexsort((ids, foreign, -sims[keep]))[:k]
        return [(str(ids[i]), float(sims[keep[i]])) for i in order]
