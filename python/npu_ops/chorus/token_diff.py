"""Token diff between a new prompt and the cached source prompt (what TGAA amplifies, what Stage 2
recomputes).

Sentence embeddings ignore word order ("a cat and a dog" vs "a dog and a cat": cosine 0.996 with
MiniLM), so the tokens that differ come from a sequence diff (:class:`difflib.SequenceMatcher`) of the
two token-id lists: tokens of the new prompt in ``replace``/``insert`` opcodes are *added* (amplified
by TGAA, their attention regions recomputed), tokens of the source in ``replace``/``delete`` opcodes
are *removed* (their regions in the cached latent must be recomputed too). Word order matters: a
moved word shows up as removed at one place and added at another.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TokenDiff", "token_diff"]


@dataclass(frozen=True)
class TokenDiff:
    """Positions (indices into the token lists) of the differing tokens."""

    added: tuple[int, ...]  # positions in the new prompt's tokens
    removed: tuple[int, ...]  # positions in the source prompt's tokens
    added_ids: tuple[int, ...]
    removed_ids: tuple[int, ...]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def token_diff(new_ids: Sequence[int], source_ids: Sequence[int]) -> TokenDiff:
    """Added and removed tokens between ``new_ids`` and ``source_ids`` (see the module docstring).

    Args:
        new_ids: token ids of the new prompt (same tokenizer as ``source_ids``).
        source_ids: token ids of the cached source prompt.

    Returns:
        :class:`TokenDiff`; ``empty`` when the sequences are equal.
    """
    for arg, ids in (("new_ids", new_ids), ("source_ids", source_ids)):
        if isinstance(ids, (str, bytes)) or not all(isinstance(i, int) for i in ids):
            raise TypeError(f"token_diff: {arg} must be a sequence of int token ids, got {ids!r:.80}")
    new_ids, source_ids = list(new_ids), list(source_ids)
    sm = difflib.SequenceMatcher(a=source_ids, b=new_ids, autojunk=False)
    added: list[int] = []
    removed: list[int] = []
    for tag, a0, a1, b0, b1 in sm.get_opcodes():
        if tag in ("replace", "delete"):
            removed.extend(range(a0, a1))
        if tag in ("replace", "insert"):
            added.extend(range(b0, b1))
    return TokenDiff(
        added=tuple(added),
        removed=tuple(removed),
        added_ids=tuple(new_ids[i] for i in added),
        removed_ids=tuple(source_ids[i] for i in removed),
    )
