"""Candidate elimination (OSTrack CE): drop the search tokens that the template centre attends to least.

Token layout everywhere: ``[template tokens (Lz) | search tokens (Ls)]`` along dim 1.
"""

from __future__ import annotations

import math

import torch


def kept_count(keep_ratio: float, num_search: int) -> int:
    """Search tokens kept out of ``num_search``: ``ceil(ratio * n)`` in float64, as the official code does."""
    return math.ceil(keep_ratio * num_search)


def template_focus_mask(side: int, template_range: str) -> torch.Tensor | None:
    """Which template tokens rank the search tokens: (side*side,) bool, or None for all of them.

    ``CTR_POINT`` is the single centre token, at row and column ``(side - 1) // 2`` (3 for an 8x8 grid, 5 for 12x12,
    as in the official table); ``CTR_REC`` is the 2x2 block starting there.
    """
    if template_range == "ALL":
        return None
    start = (side - 1) // 2
    span = 1 if template_range == "CTR_POINT" else 2
    grid = torch.zeros(side, side, dtype=torch.bool)
    grid[start : start + span, start : start + span] = True
    return grid.flatten()


def search_token_scores(attn: torch.Tensor, num_template: int, focus: torch.Tensor | None) -> torch.Tensor:
    """Mean attention (over focus template rows, then heads) each search token receives: (B, Ls)."""
    rows = attn[:, :, :num_template, num_template:]
    if focus is not None:
        rows = rows[:, :, focus.to(rows.device)]
    return rows.mean(dim=2).mean(dim=1)


def eliminate(
    tokens: torch.Tensor,
    attn: torch.Tensor,
    num_template: int,
    keep_ratio: float,
    global_index: torch.Tensor,
    focus: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keep the best-ranked search tokens, re-ordered by descending score.

    Returns the new tokens ``[template | kept search]``, the original index of each kept search token (B, keep) and
    the original indices of the removed ones in descending-score order (B, Ls - keep), or None if none were removed.
    """
    num_search = attn.shape[-1] - num_template
    keep = kept_count(keep_ratio, num_search)
    if keep >= num_search:
        return tokens, global_index, None
    scores = search_token_scores(attn, num_template, focus)
    order = torch.sort(scores, dim=1, descending=True).indices
    kept_pos, removed_pos = order[:, :keep], order[:, keep:]
    search = tokens[:, num_template:]
    channels = search.shape[-1]
    kept_tokens = search.gather(1, kept_pos.unsqueeze(-1).expand(-1, -1, channels))
    new_tokens = torch.cat([tokens[:, :num_template], kept_tokens], dim=1)
    return new_tokens, global_index.gather(1, kept_pos), global_index.gather(1, removed_pos)


def restore_search_order(
    search: torch.Tensor, kept_index: torch.Tensor, removed: list[torch.Tensor], num_search: int
) -> torch.Tensor:
    """Put kept search tokens back at their original positions; removed positions become exact zeros."""
    if not removed:
        return search
    batch, _, channels = search.shape
    padded = torch.cat([search, search.new_zeros(batch, num_search - search.shape[1], channels)], dim=1)
    index = torch.cat([kept_index, *removed], dim=1).long()
    return torch.zeros_like(padded).scatter_(1, index.unsqueeze(-1).expand(-1, -1, channels), padded)
