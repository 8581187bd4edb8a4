"""Length-controlled win rate in AlpacaEval 2.0's manner (Dubois et al. 2024): fit a
logistic model (GLM) of the judge's preference on the length difference, then report the
preference it predicts at zero length difference.

AlpacaEval 2.0's GLM is ``logit p = (θ_m - θ_b) + φ·tanh(Δlen/std(Δlen)) + (ψ_m - ψ_b)·γ_x``
with γ_x an instruction-difficulty term learned on its 805 prompts across many models, and
a regularisation towards the baseline. With one model, one baseline and the user's own
prompts there is no difficulty data, so this model includes exactly two terms:

    logit p_i = θ + φ·tanh(Δ_i / std(Δ))      Δ_i = len(model output) - len(baseline output)

(lengths in characters, as AlpacaEval's ``avg_length``), fitted by maximum likelihood on the
per-prompt preference p_i ∈ {1, 0.5, 0} (win, tie, loss) with a tiny ridge (1e-6) so a
clean sweep stays finite. The LC win rate is ``100·sigmoid(θ)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RIDGE = 1e-6


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def fit(preferences: Sequence[float], delta_len: Sequence[float]) -> dict[str, float]:
    """``{"lc_win_rate", "theta", "phi", "std_delta_len"}`` (Newton's method, soft labels)."""
    y = np.asarray(preferences, dtype=float)
    d = np.asarray(delta_len, dtype=float)
    if len(y) == 0:
        return {"lc_win_rate": float("nan"), "theta": float("nan"), "phi": 0.0, "std": 0.0}
    std = float(d.std())
    feature = np.tanh(d / std) if std > 0 else np.zeros_like(d)
    x = np.column_stack([np.ones_like(d), feature])
    w = np.zeros(2)
    reg = RIDGE * len(y)
    for _ in range(100):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + reg * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + reg * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    theta, phi = float(w[0]), float(w[1])
    return {
        "lc_win_rate": 100.0 * float(_sigmoid(np.array(theta))),
        "theta": theta,
        "phi": phi,
        "std_delta_len": std,
    }
