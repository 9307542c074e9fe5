"""Relevance feedback: an L2-regularised logistic regression on tile embeddings fitted to yes/no labels,
with the text query as its prior, that re-ranks whole stores.

Model: ``p(x) = sigmoid(w . x + b)``; minimise ``sum_i c_i logloss(y_i, w . x_i + b) + l2/2 |w - w0|^2`` with
``w0 = prior_scale * q`` (``q`` the unit text embedding; ``w0 = 0`` without text), so with few labels the
ranking stays close to the text query and moves away as labels contradict it. Tiles sampled from the searched
stores join as weak negatives (``background``), which makes positives alone (no "no" yet) a usable query.

The fit is Newton's method (IRLS) in numpy on at most a few hundred labelled rows. Measured reason for not using
scikit-learn (bench/feedback.py, bench/results/feedback.json, 2 cores at load 4.6): this fit takes 1.1 ms
(p50), ``sklearn.linear_model.LogisticRegression`` 2.8 ms on the same rows, while scikit-learn + SciPy weigh
132 MB installed, which every engine install would carry; a whole round over 1e5 tiles takes 30 ms (p50).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import BadInput
from engine.ranking import LinearScorer

MAX_LABELS = 1000
BIAS_SCALE = 10.0  # the constant feature standing for the bias (penalty on b: l2/2 (b/10)^2)


@dataclass(frozen=True)
class FeedbackParams:
    """Fit settings. ``prior_scale``: logit per unit cosine of the text prior; ``l2``: pull towards the prior;
    ``background``: store tiles sampled as weak negatives, ``background_weight``: their summed weight relative
    to one label; ``iterations``/``tol``: Newton steps and the step size at which it stops."""

    prior_scale: float = 10.0
    l2: float = 0.01
    background: int = 48
    background_weight: float = 2.0
    iterations: int = 25
    tol: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.prior_scale <= 1000:
            raise BadInput(f"prior_scale must be within 0..1000, got {self.prior_scale}")
        if not 1e-6 <= self.l2 <= 1e6:
            raise BadInput(f"l2 must be within 1e-6..1e6, got {self.l2}")
        if not 0 <= self.background <= 100_000 or self.background_weight < 0:
            raise BadInput("background must be within 0..100000 and background_weight >= 0")


@dataclass(frozen=True)
class FitResult:
    scorer: LinearScorer
    iterations: int
    converged: bool
    train_accuracy: float  # on the labelled rows (not the background)


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None = None,
    w0: np.ndarray | None = None,
    l2: float = 0.01,
    iterations: int = 25,
    tol: float = 1e-6,
) -> tuple[np.ndarray, float, int, bool]:
    """Newton/IRLS for ``sum c_i logloss(y_i, x_i . w + b) + l2/2 (|w - w0|^2 + ((b - b0) / BIAS_SCALE)^2)``,
    ``b0`` the bias at which the prior's logits match the weighted mean label.

    The bias is an extra feature of value ``BIAS_SCALE`` (its penalty is negligible). With at most as many rows
    as dimensions the optimum is ``theta = prior + A' alpha`` (A the rows with the bias feature), so Newton runs
    on ``alpha``: an n x n system on the Gram matrix per step instead of (D+1) x (D+1); for a few labels and
    ``background`` rows these are small enough that BLAS stays single-threaded (threads waiting on each other
    cost more than the arithmetic on a busy machine). Returns ``(w, b, iterations, converged)``; float64."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    y = np.asarray(y, dtype=np.float64)
    c = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    a = np.hstack([x, np.full((n, 1), BIAS_SCALE)])
    prior = np.zeros(d + 1) if w0 is None else np.append(np.asarray(w0, dtype=np.float64), 0.0)
    z_prior = a @ prior
    b0 = float(np.log((c @ y + 0.5) / (c @ (1 - y) + 0.5)) - np.average(z_prior, weights=c))
    prior[-1] = b0 / BIAS_SCALE
    z_prior = z_prior + b0
    converged = False
    steps = 0
    if n <= d + 1:  # row space
        gram = a @ a.T
        alpha = np.zeros(n)
        z = z_prior.copy()
        while steps < iterations:
            steps += 1
            p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
            m = (c * p * (1 - p))[:, None] * gram
            m[np.diag_indices(n)] += l2
            alpha -= np.linalg.solve(m, c * (p - y) + l2 * alpha)
            z_new = z_prior + gram @ alpha
            moved = float(np.max(np.abs(z_new - z)))
            z = z_new
            if moved < tol:
                converged = True
                break
        theta = prior + a.T @ alpha
    else:  # weight space
        theta = prior.copy()
        while steps < iterations:
            steps += 1
            p = 1.0 / (1.0 + np.exp(-np.clip(a @ theta, -60, 60)))
            hess = (a * (c * p * (1 - p))[:, None]).T @ a
            hess[np.diag_indices(d + 1)] += l2
            step = np.linalg.solve(hess, a.T @ (c * (p - y)) + l2 * (theta - prior))
            theta -= step
            if float(np.max(np.abs(a @ step))) < tol:
                converged = True
                break
    return theta[:-1], float(theta[-1] * BIAS_SCALE), steps, converged


def fit_feedback(
    positives: np.ndarray,
    negatives: np.ndarray,
    text: np.ndarray | None,
    background: np.ndarray | None,
    params: FeedbackParams = FeedbackParams(),
) -> FitResult:
    """The classifier for one feedback round: labelled rows ``[p, D]`` / ``[q, D]``, the unit text embedding
    (or None), and store rows sampled as weak negatives ``[b, D]`` (or None)."""
    pos = np.asarray(positives, dtype=np.float32).reshape(-1, _dim(positives, negatives, text))
    neg = np.asarray(negatives, dtype=np.float32).reshape(-1, pos.shape[1])
    if len(pos) == 0 and text is None:
        raise BadInput("relevance feedback needs a 'yes' tile or a text query")
    if len(pos) + len(neg) > MAX_LABELS:
        raise BadInput(f"at most {MAX_LABELS} labelled tiles, got {len(pos) + len(neg)}")
    rows = [pos, neg]
    labels = [np.ones(len(pos)), np.zeros(len(neg))]
    weights = [np.ones(len(pos)), np.ones(len(neg))]
    if background is not None and len(background) and params.background_weight > 0:
        bg = np.asarray(background, dtype=np.float32).reshape(-1, pos.shape[1])
        rows.append(bg)
        labels.append(np.zeros(len(bg)))
        weights.append(np.full(len(bg), params.background_weight / len(bg)))
    w0 = None
    if text is not None:
        q = np.asarray(text, dtype=np.float64).ravel()
        w0 = params.prior_scale * q / max(float(np.linalg.norm(q)), 1e-12)
    x = np.vstack(rows)
    y = np.concatenate(labels)
    w, b, it, ok = fit_logistic(x, y, np.concatenate(weights), w0, params.l2, params.iterations, params.tol)
    n_lab = len(pos) + len(neg)
    pred = (x[:n_lab] @ w + b) > 0
    acc = float(np.mean(pred == (y[:n_lab] > 0.5))) if n_lab else 1.0
    return FitResult(LinearScorer(w[:, None], b, "sigmoid", kind="feedback"), it, ok, acc)


def _dim(*arrays) -> int:
    for a in arrays:
        if a is not None and np.asarray(a).size:
            return int(np.asarray(a).shape[-1])
    raise BadInput("relevance feedback needs a 'yes' tile or a text query")


def sample_background(n_rows: list[int], count: int, exclude: set[tuple[int, int]], seed: int = 0) -> list[tuple]:
    """``count`` (store index, row) pairs spread over stores of ``n_rows`` tiles, without the labelled ones."""
    total = sum(n_rows)
    if total == 0 or count == 0:
        return []
    rng = np.random.default_rng(seed)
    picks = rng.choice(total, size=min(count + len(exclude), total), replace=False)
    bounds = np.cumsum([0, *n_rows])
    out = []
    for g in np.sort(picks):
        s = int(np.searchsorted(bounds, g, side="right") - 1)
        key = (s, int(g - bounds[s]))
        if key not in exclude:
            out.append(key)
        if len(out) == count:
            break
    return out
