"""Comparing a state_dict with the one a module expects, for one-line error messages."""
from __future__ import annotations

from collections.abc import Mapping


def _listed(keys: list[str], limit: int | None) -> str:
    shown = keys if limit is None else keys[:limit]
    return ", ".join(shown) + (f" ... ({len(keys)} in all)" if len(shown) < len(keys) else "")


def describe_mismatch(expected: Mapping, given: Mapping, limit: int | None = None) -> str | None:
    """None when ``given`` has exactly ``expected``'s keys and shapes; otherwise
    'unexpected keys: ...; missing keys: ...; shape mismatch: k (given) vs (expected)'."""
    unexpected = sorted(set(given) - set(expected))
    missing = sorted(set(expected) - set(given))
    shapes = sorted(k for k in set(expected) & set(given)
                    if tuple(expected[k].shape) != tuple(given[k].shape))
    parts = []
    if unexpected:
        parts.append(f"unexpected keys: {_listed(unexpected, limit)}")
    if missing:
        parts.append(f"missing keys: {_listed(missing, limit)}")
    if shapes:
        parts.append("shape mismatch: " + _listed(
            [f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}" for k in shapes], limit))
    return "; ".join(parts) or None
