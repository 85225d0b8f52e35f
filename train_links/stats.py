"""The statistics every accuracy claim here carries: a 95 % interval per accuracy and an exact paired test.

Two systems scored on the same rows are compared by their discordant rows only (McNemar): b rows right for the
first and wrong for the second, c the reverse. Under "no difference" each discordant row is a fair coin, so the
exact two-sided p is a binomial tail, which stays valid for the small counts per task family."""

import math


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p for b and c discordant rows (1.0 when there are none)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n rows: honest near 0 % and 100 % and for small n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def paired(a: list[bool], b: list[bool]) -> dict:
    """{"only_a", "only_b", "p"}: rows right for a alone, for b alone, and the exact McNemar p."""
    if len(a) != len(b):
        raise ValueError("paired scores need the same rows")
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    return {"only_a": only_a, "only_b": only_b, "p": mcnemar_p(only_a, only_b)}
