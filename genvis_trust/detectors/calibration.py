"""Score calibration fitted on a validation split, so that p = 0.5 means even odds.

Methods: ``temperature`` (p = sigmoid(z / T)), ``platt`` (p = sigmoid(a z + b): temperature
plus a bias, the default because a detector's bias is rarely right on new data) and
``isotonic`` (scikit-learn's monotone step fit, interpolated). The fitted state is a
small JSON dict stored in the detector's config.

>>> import numpy as np
>>> z = np.array([-4., -2., -1., 0., 1., 2., 4.]); y = np.array([0, 0, 1, 0, 1, 1, 1])
>>> cal = fit_calibration(z, y, "platt")
>>> p = apply_calibration(cal, z); bool(np.all(np.diff(p) >= 0))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHODS = ("none", "temperature", "platt", "isotonic")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def fit_calibration(logits, labels, method: str = "platt") -> dict[str, Any]:
    """Fit on validation logits (never the test split); returns the JSON-able state."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    z = np.asarray(logits, np.float64).ravel()
    y = np.asarray(labels, np.float64).ravel()
    if method == "none":
        return {"method": "none"}
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs both real and generated validation images")
    # Platt's smoothed targets: with perfectly separated validation scores the maximum-likelihood
    # slope is infinite and every probability would saturate to exactly 0 or 1; targets of
    # (n+ + 1)/(n+ + 2) and 1/(n- + 2) keep the fit finite and the ranking intact
    # imported here: scoring only applies a fitted state, and scipy.optimize costs ~0.5 s
    from scipy.optimize import minimize

    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1.0 / (n_neg + 2))
    if method == "temperature":
        res = minimize(lambda lt: _nll(_sigmoid(z / np.exp(lt[0])), t), x0=[0.0], method="Nelder-Mead")
        return {"method": "temperature", "temperature": float(np.exp(res.x[0]))}
    if method == "platt":
        res = minimize(lambda ab: _nll(_sigmoid(ab[0] * z + ab[1]), t), x0=[1.0, 0.0], method="Nelder-Mead")
        a, b = float(res.x[0]), float(res.x[1])
        if a <= 0:
            # the detector ranks validation images backwards: never flip it silently; say so and
            # give every image the validation base rate (no evidence either way)
            rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
            return {"method": "platt", "a": 0.0, "b": float(np.log(rate / (1 - rate))),
                    "warning": "non-positive slope on validation: detector has no usable ranking"}
        return {"method": "platt", "a": a, "b": b}
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
    return {
        "method": "isotonic",
        "x": [float(v) for v in iso.X_thresholds_],
        "y": [float(v) for v in iso.y_thresholds_],
    }


def apply_calibration(state: dict[str, Any] | None, logits) -> np.ndarray:
    """Calibrated p(generated) for raw logits."""
    z = np.asarray(logits, np.float64)
    method = (state or {}).get("method", "none")
    if method == "none":
        return _sigmoid(z)
    if method == "temperature":
        return _sigmoid(z / state["temperature"])
    if method == "platt":
        return _sigmoid(state["a"] * z + state["b"])
    if method == "isotonic":
        return np.interp(z, state["x"], state["y"])
    raise ValueError(f"unknown calibration method {method!r}")
