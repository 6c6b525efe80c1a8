"""The Kuhn-Munkres matching of the CULane and OpenLane C++ tools (``hungarianGraph.hpp``), step
for step, for the evaluators that must give the official tool's counts on every image.

It differs from an exact maximum-weight assignment in three ways, all kept here: an edge is
tight when ``|l_u + r_v - w_uv| < 0.01`` (so an assignment up to about 0.01 below the best can
be chosen); a NaN weight (the IoU of two lanes that are both off the canvas, 0 / 0) is never
tight and never lowers the slack; and when no slack is left for a row (``d`` stays 1e10) the
whole matching stops, leaving that row and every later one unmatched. The smaller side of the
matrix is the left one (the tool transposes a matrix with more rows than columns).
"""
from __future__ import annotations

import numpy as np

TOLERANCE = 1e-2
_NO_SLACK = 1e10


def official_assign(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) pairs the tool matches in ``weights`` (float64, rows: annotations)."""
    mat = np.asarray(weights, dtype=np.float64)
    swapped = mat.shape[0] > mat.shape[1]
    w = (mat.T if swapped else mat).tolist()
    left, right = len(w), len(w[0]) if w else 0
    left_match, right_match = [-1] * left, [-1] * right
    lw = []
    for row in w:
        best = -1e5
        for value in row:
            if best < value:
                best = value
        lw.append(best)
    rw = [0.0] * right
    left_used, right_used = [False] * left, [False] * right

    def augment(u: int) -> bool:
        left_used[u] = True
        for v in range(right):
            if not right_used[v] and abs(lw[u] + rw[v] - w[u][v]) < TOLERANCE:
                right_used[v] = True
                if right_match[v] == -1 or augment(right_match[v]):
                    right_match[v], left_match[u] = u, v
                    return True
        return False

    stopped = False
    for u in range(left):
        while not stopped:
            left_used[:], right_used[:] = [False] * left, [False] * right
            if augment(u):
                break
            d = _NO_SLACK
            for i in range(left):
                if left_used[i]:
                    for j in range(right):
                        if not right_used[j]:
                            slack = lw[i] + rw[j] - w[i][j]
                            d = slack if slack < d else d  # std::min(d, slack): NaN never wins
            if d == _NO_SLACK:
                stopped = True
                break
            for i in range(left):
                if left_used[i]:
                    lw[i] -= d
            for j in range(right):
                if right_used[j]:
                    rw[j] += d
        if stopped:
            break
    pairs = [(v, u) if swapped else (u, v) for u, v in enumerate(left_match) if v >= 0]
    pairs.sort()
    rows = np.array([p[0] for p in pairs], dtype=np.int64)
    cols = np.array([p[1] for p in pairs], dtype=np.int64)
    return rows, cols
