"""AlpacaEval 2.0's length-controlled win rate (Dubois et al. 2024), computed the official way.

The official function is ``alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate``:
when ``alpaca_eval`` is installed (``pip install 'langgraph-moa[eval-official]'``) it is what
runs; otherwise ``fit_lc`` below, a faithful copy of its computation with scikit-learn:

- preference in [0, 1] (AlpacaEval's ``preference`` 1/2/1.5 minus 1, 0 read as a draw);
- features ``np.tanh(std_delta_len)`` with ``std_delta_len = (len(output_1) -
  len(output_2)) / std`` (characters, sample std), ``instruction_difficulty`` (GLM
  ``length_controlled_v1`` only) and ``not_gamed_baseline`` (1 for our rows), no intercept;
- ``length_controlled_v1`` also fits AlpacaEval's annotations of two gamed baselines
  (``df_gamed.csv``, weight 0.1 each), which regularises towards the baseline;
- ``LogisticRegressionCV`` with an L1 penalty (liblinear, ``random_state=123``), soft labels
  by duplicating each row with weights p and 1 - p, 5-fold ``GroupKFold`` over prompts,
  scored by the weighted log loss; the LC win rate is the mean predicted preference at zero
  length difference, times 100.

``length_controlled_v1`` needs AlpacaEval's own data: ``df_gamed.csv`` of the Hugging Face
dataset ``tatsu-lab/alpaca_eval`` (instruction difficulties of its 805 prompts and the gamed
baselines' annotations), and our prompts must be those 805 (``index`` = their position).
Without it (your own prompts) the GLM is ``length_controlled_minimal``: the same fit without
the difficulty and gamed terms. The variant that ran is reported with the number.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import types
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

V1 = "length_controlled_v1"
MINIMAL = "length_controlled_minimal"
MIN_PROMPTS = 5
"""``GroupKFold(n_splits=5)`` needs at least 5 prompts."""
GAMED_WEIGHT = 0.2 / 2
"""``regularize_to_baseline_lambda`` 0.2, divided by 2 as there are two gamed baselines."""


def preference_01(preference: float) -> float:
    """AlpacaEval's preference (1 baseline, 2 model, 1.5 or 0 draw) in [0, 1]."""
    return (1.5 if float(preference) == 0.0 else float(preference)) - 1


def read_gamed(path: str | Path) -> dict[str, Any]:
    """``df_gamed.csv``: the gamed baselines' rows and each prompt's difficulty (by row label
    of its first occurrence, as pandas' ``drop_duplicates("index")[...]`` indexes it)."""
    rows: list[list[float]] = []
    difficulty: dict[int, float] = {}
    seen: set[int] = set()
    with open(path, newline="", encoding="utf-8") as f:
        for label, row in enumerate(csv.DictReader(f)):
            index = int(float(row["index"]))
            if index not in seen:
                seen.add(index)
                difficulty[label] = float(row["instruction_difficulty"])
            pref = row.get("preference")
            rows.append(
                [
                    float(pref) if pref not in (None, "") else float("nan"),
                    float(row["std_delta_len"]),
                    float(row["instruction_difficulty"]),
                    0.0 if row["not_gamed_baseline"].strip().lower() in ("false", "0") else 1.0,
                ]
            )
    return {"rows": np.array(rows, dtype=float), "difficulty": difficulty, "path": str(path)}


def _logloss_continuous(
    y_true: Any, y_pred: Any, true_prob: Any, true_sample_weight: Any = None
) -> float:
    """AlpacaEval's ``logloss_continuous``: the log loss of soft labels (rows duplicated)."""
    y = np.where(np.asarray(y_true) == 1, true_prob, 1 - np.asarray(true_prob))
    p = np.clip(y_pred, 1e-15, 1 - 1e-15)
    loss = y * np.log(p) + (1 - y) * np.log(1 - p)
    if true_sample_weight is not None:
        loss = loss * true_sample_weight
    return float(-np.mean(loss))


def _fit(x: np.ndarray, prob: np.ndarray, weight: np.ndarray | None) -> Any:
    """AlpacaEval's ``fit_LogisticRegressionCV(..., is_ytrue_proba=True, n_splits=5)``."""
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = len(prob)
    groups = np.concatenate([np.arange(n), np.arange(n)])
    x_dup = np.concatenate([x, x])
    y_dup = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
    true_prob = np.concatenate([prob, 1 - prob])
    true_weight = None if weight is None else np.concatenate([weight, weight])
    sample_weight = true_prob if true_weight is None else true_prob * true_weight
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's deprecation of `penalty`, convergence
        scorer = make_scorer(
            _logloss_continuous, response_method="predict_proba", greater_is_better=False
        ).set_score_request(true_sample_weight=True, true_prob=True)
        model = LogisticRegressionCV(
            cv=GroupKFold(n_splits=5),
            scoring=scorer,
            random_state=123,
            dual=False,
            penalty="l1",
            solver="liblinear",
            n_jobs=None,
            fit_intercept=False,
        )
        model.set_fit_request(sample_weight=True)
        model.fit(
            x_dup,
            y_dup,
            sample_weight=sample_weight,
            groups=groups,
            true_sample_weight=true_weight,
            true_prob=true_prob,
        )
    return model


def fit_lc(annotations: Sequence[dict[str, Any]], gamed: dict[str, Any] | None) -> dict[str, Any]:
    """Our implementation: ``length_controlled_v1`` with ``gamed``, else ``_minimal``."""
    prefs = np.array([preference_01(a["preference"]) for a in annotations], dtype=float)
    delta = np.array([len(a["output_1"]) - len(a["output_2"]) for a in annotations], dtype=float)
    std = float(delta.std(ddof=1)) if len(delta) > 1 else 0.0
    tanh = np.tanh(delta / std) if std > 0 else np.zeros_like(delta)
    ones = np.ones_like(delta)
    if gamed is not None:
        difficulty = np.array([gamed["difficulty"][int(a["index"])] for a in annotations])
        ours = np.column_stack([tanh, difficulty, ones])
        g = gamed["rows"]
        train = np.concatenate([g[:, [1, 2, 3]], ours])
        train[: len(g), 0] = np.tanh(g[:, 1])
        prob = np.concatenate([g[:, 0], prefs])
        weight = np.concatenate([g[:, 3] + GAMED_WEIGHT * (1 - g[:, 3]), ones])
        keep = ~np.isnan(prob)
        model = _fit(train[keep], prob[keep], weight[keep])
        test = np.column_stack([np.zeros_like(delta), difficulty, ones])
    else:
        model = _fit(np.column_stack([tanh, ones]), prefs, None)
        test = np.column_stack([np.zeros_like(delta), ones])
    predicted = model.predict_proba(test)[:, 1]
    sem = float(predicted.std(ddof=1) / np.sqrt(len(predicted))) if len(predicted) > 1 else 0.0
    return {
        "lc_win_rate": 100 * float(predicted.mean()),
        "lc_standard_error": 100 * sem,
        "weights": [float(w) for w in model.coef_[0]],
    }


def _pkg_resources_shim() -> None:
    """alpaca_eval 0.6.6 imports ``pkg_resources`` (for two version checks), which
    setuptools >= 81 no longer ships; give it the two functions it uses."""
    if "pkg_resources" in sys.modules:
        return
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import importlib.metadata

        from packaging.version import parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = parse  # type: ignore[attr-defined]
        shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name)
        )
        sys.modules["pkg_resources"] = shim


def official(
    annotations: Sequence[dict[str, Any]], glm: str, gamed_path: str | None
) -> dict[str, Any] | None:
    """alpaca_eval's own ``get_length_controlled_winrate`` on our annotations, offline: its
    ``df_gamed.csv`` download is pointed at ``gamed_path`` (for ``_minimal``, which does not
    use it, at a stub of zero difficulties). None when alpaca_eval is not installed."""
    try:
        _pkg_resources_shim()
        import pandas as pd
        from alpaca_eval.metrics import glm_winrate
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = gamed_path
        if path is None:
            path = str(Path(tmp) / "df_gamed.csv")
            top = max(int(a["index"]) for a in annotations) + 1
            pd.DataFrame(
                {
                    "model": "stub",
                    "index": range(top),
                    "preference": 0.5,
                    "std_delta_len": 0.0,
                    "instruction_difficulty": 0.0,
                    "not_gamed_baseline": False,
                }
            ).to_csv(path, index=False)
        original = glm_winrate.hf_hub_download
        glm_winrate.hf_hub_download = lambda *a, **k: path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                metrics = glm_winrate.get_length_controlled_winrate(
                    pd.DataFrame(list(annotations)),
                    glm_name=glm,
                    save_weights_dir=None,
                    is_warn_extreme_changes=False,
                )
        finally:
            glm_winrate.hf_hub_download = original
    return {
        "lc_win_rate": float(metrics["length_controlled_winrate"]),
        "lc_standard_error": float(metrics["lc_standard_error"]),
    }


def lc_win_rate(
    annotations: Sequence[dict[str, Any]],
    gamed_path: str | None = None,
    prefer_official: bool = True,
) -> dict[str, Any]:
    """The LC win rate of AlpacaEval-format annotations (``preference``, ``output_1`` the
    baseline's, ``output_2`` ours, ``index`` the prompt's position), with ``variant``
    naming the GLM and whose code computed it."""
    if len(annotations) < MIN_PROMPTS:
        return {
            "lc_win_rate": float("nan"),
            "lc_standard_error": float("nan"),
            "variant": f"none: the GLM's 5-fold cross-validation needs {MIN_PROMPTS}+ prompts",
        }
    glm = V1 if gamed_path else MINIMAL
    why = "" if gamed_path else " (no df_gamed.csv: no instruction-difficulty term)"
    if prefer_official and (got := official(annotations, glm, gamed_path)) is not None:
        from importlib.metadata import version

        return {**got, "variant": f"{glm}, alpaca_eval {version('alpaca_eval')}{why}"}
    gamed = read_gamed(gamed_path) if gamed_path else None
    return {**fit_lc(annotations, gamed), "variant": f"{glm}, langgraph_moa{why}"}
