r"""Small classifiers with hand-written gradients: softmax regression, a one-hidden-layer MLP and
the same MLP with a layer normalization (:class:`LayerNormMLP`, scale-invariant in ``W1``).

Parameters are dicts of arrays, so the optimizers apply to them directly::

    model = ol.models.SoftmaxRegression(n_features=64, n_classes=10)
    params = model.init_params()
    opt = ol.adam(lr=0.05)
    state = opt.init(params)
    for _ in range(300):
        loss, grads = model.loss_and_grad(params, X, y)
        updates, state = opt.update(grads, state, params)
        params = ol.apply_updates(params, updates)

**Batches of models.** Every parameter may carry leading batch axes: ``W`` of shape
``(*batch, d, c)`` and ``b`` of shape ``(*batch, c)`` are ``prod(batch)`` independent models
trained on the same data ``X`` of shape ``(n, d)``. Losses then have shape ``batch`` and every
gradient has the shape of its parameter, so hyperparameter arrays broadcasting against the
parameters (``lr`` of shape ``(K, 1, 1)`` with ``W`` of shape ``(K, d, c)``) train a whole
sweep in one pass; model ``k`` of the batch equals the same model trained alone. Each model
may also have its own data (``X`` of shape ``(*batch, n, d)``), and :func:`train` can give
each its own mini-batch order (``seeds``) and freeze the runs that diverge
(``on_divergence="freeze"``).

**Notation.** :math:`X \in \mathbb{R}^{n\times d}` holds one sample per row, :math:`y_i \in
\{0, \dots, c-1\}` the labels and :math:`Y \in \{0,1\}^{n \times c}` their one-hot matrix.

**Softmax and cross-entropy.** For logits :math:`Z = XW + \mathbf{1}b^\top`,

.. math::
    P_{ij} = \operatorname{softmax}(Z_{i})_j = \frac{e^{Z_{ij}}}{\sum_k e^{Z_{ik}}}, \qquad
    L = -\frac{1}{n}\sum_{i=1}^n \log P_{i y_i}
      = \frac{1}{n}\sum_{i=1}^n \Big(\log\sum_k e^{Z_{ik}} - Z_{i y_i}\Big),

evaluated stably as :math:`\log\sum_k e^{Z_{ik}} = m_i + \log\sum_k e^{Z_{ik} - m_i}` with
:math:`m_i = \max_k Z_{ik}`, so no exponential overflows. The derivative of the loss with
respect to the logits is :math:`\partial L/\partial Z = (P - Y)/n`.

The models are checked against central finite differences in the tests.
"""

import functools
import math

import numpy as np

from .optimizer import apply_updates
from .precision import is_float, is_low
from .validation import check_choice, check_range

ACTIVATIONS = ("tanh", "relu")
BLOCK = 1 << 20  # values in the largest temporary of a block of models (8 MB in float64)


# -- shared pieces ------------------------------------------------------------------------------
def log_softmax(Z, axis=-1):
    r""":math:`\log\operatorname{softmax}(Z) = Z - m - \log\sum_k e^{Z_k - m}`, with
    :math:`m = \max_k Z_k` along ``axis`` so that nothing overflows."""
    Z = np.asarray(Z)
    shifted = Z - Z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(Z, axis=-1):
    r""":math:`\operatorname{softmax}(Z)_j = e^{Z_j} / \sum_k e^{Z_k}` along ``axis``, computed
    stably."""
    return np.exp(log_softmax(Z, axis=axis))


def _cross_entropy_head(Z, y):
    """Mean cross-entropy of logits ``Z`` (K, c, n) and its derivative (P - Y)/n, in place.

    The class axis sits in the middle and samples are contiguous, so the reductions over the
    c classes are elementwise operations on rows of n values (much faster than reducing a
    short last axis). ``Z`` is overwritten with (P - Y)/n.
    """
    K, c, n = Z.shape
    label_index = (np.arange(K)[:, None] * (c * n) + y * n + np.arange(n)).ravel()
    z_label = Z.reshape(-1)[label_index].reshape(K, n)
    z_max = Z.max(axis=1, keepdims=True)
    Z -= z_max
    np.exp(Z, out=Z)
    total = Z.sum(axis=1, keepdims=True)
    loss = (z_max[:, 0] + np.log(total[:, 0]) - z_label).mean(axis=-1)
    Z *= 1.0 / (n * total)
    Z.reshape(-1)[label_index] -= 1.0 / n
    return loss, Z


def _l2_coefficient(l2, batch, dtype):
    """``l2`` as an array of shape ``batch``; an optimizer-style shape ``(*batch, 1, 1)`` is
    accepted too."""
    check_range("l2", l2)
    lam = np.asarray(l2, dtype=dtype)
    if lam.ndim == len(batch) + 2 and lam.shape[-2:] == (1, 1):
        lam = lam.reshape(lam.shape[:-2])
    try:
        return np.broadcast_to(lam, batch)
    except ValueError:
        raise ValueError(f"l2 of shape {np.shape(l2)} does not broadcast against the batch "
                         f"shape {batch} of the parameters") from None


def _check_params(params, shapes):
    """Check the keys, dtypes and shapes of ``params`` against ``shapes`` (name -> trailing
    shape); return the common batch shape and dtype."""
    if not isinstance(params, dict) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params must be a dict with keys {sorted(shapes)}; got {got}")
    batch = dtype = None
    for name, tail in shapes.items():
        p = params[name]
        if not isinstance(p, np.ndarray) or not is_float(p.dtype):
            raise TypeError(f"params[{name!r}] must be a float ndarray; got "
                            f"{getattr(p, 'dtype', type(p).__name__)}")
        if p.ndim < len(tail) or p.shape[p.ndim - len(tail):] != tail:
            raise ValueError(f"params[{name!r}] has shape {p.shape}; expected (*batch, "
                             f"{', '.join(map(str, tail))})")
        b = p.shape[:p.ndim - len(tail)]
        if batch is not None and b != batch:
            raise ValueError(f"params[{name!r}] has batch shape {b} but another parameter has "
                             f"{batch}; all parameters must share the leading batch axes")
        batch, dtype = b, (p.dtype if dtype is None else np.result_type(dtype, p.dtype))
    return batch, dtype


def _check_data(X, y, n_features, n_classes, dtype, batch=()):
    """``X`` of shape (n, d), shared by every model, or (*batch, n, d), one data set per model
    of the batch (then ``y`` has shape (*batch, n))."""
    X = np.asarray(X)
    if X.ndim not in (2, len(batch) + 2) or X.shape[-1] != n_features or (
            X.ndim > 2 and X.shape[:-2] != batch):
        per_model = f" or (*batch, n, {n_features}) with batch {batch}" if batch else ""
        raise ValueError(f"X must have shape (n, {n_features}){per_model}; got {X.shape}")
    X = X.astype(dtype, copy=False)
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.shape != X.shape[:-1] or y.dtype.kind not in "iu":
        raise ValueError(f"y must be an integer array of shape {X.shape[:-1]}; got shape "
                         f"{y.shape} and dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}; got values in "
                         f"{y.min()}..{y.max()}")
    return X, y.astype(np.intp, copy=False)


def _rng(rng):
    if rng is None or isinstance(rng, bool):
        raise TypeError("rng must be a np.random.Generator or an integer seed; got "
                        f"{rng!r}")
    return np.random.default_rng(rng)


def _batch_shape(batch):
    batch = (batch,) if isinstance(batch, int | np.integer) else tuple(batch)
    if any(int(k) < 1 for k in batch):
        raise ValueError(f"batch must be a tuple of positive sizes; got {batch}")
    return tuple(int(k) for k in batch)


def _low_precision(method):
    """``method`` for float16 or bfloat16 params: evaluated on their float32 values, its
    arrays (logits; loss and gradients) rounded to the params' dtype, as from a forward and
    backward pass that accumulates in float32 and stores in low precision."""

    @functools.wraps(method)
    def wrapper(self, params, *args, **kwargs):
        dtypes = {getattr(p, "dtype", None) for p in params.values()} if isinstance(
            params, dict) else set()
        low = [d for d in dtypes if d is not None and is_low(d)]
        if not low:
            return method(self, params, *args, **kwargs)
        if len(dtypes) > 1:
            raise TypeError(f"params mix the dtypes {sorted(map(str, dtypes))}; a model in "
                            f"{low[0]} needs all its params in {low[0]}")
        out = method(self, {k: v.astype(np.float32) for k, v in params.items()}, *args,
                     **kwargs)
        if isinstance(out, tuple):
            loss, grads = out
            return (np.asarray(loss).astype(low[0])[()],
                    {k: g.astype(low[0]) for k, g in grads.items()})
        return out.astype(low[0])

    return wrapper


class _Classifier:
    """What both models share: predictions and accuracy from the logits.

    float16 and bfloat16 params are evaluated in float32 and the results rounded to their
    dtype (mixed precision's float32 accumulation)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("logits", "loss_and_grad"):
            if name in cls.__dict__:
                setattr(cls, name, _low_precision(cls.__dict__[name]))

    def logits(self, params, X):
        """The logits, of shape ``(*batch, n, c)``."""
        raise NotImplementedError

    def predict_proba(self, params, X):
        """Class probabilities :math:`P = \\operatorname{softmax}(Z)`, shape ``(*batch, n, c)``."""
        return softmax(self.logits(params, X))

    def predict(self, params, X):
        """The most probable class of every sample, shape ``(*batch, n)``."""
        return self.logits(params, X).argmax(axis=-1)

    def accuracy(self, params, X, y):
        """The fraction of samples whose predicted class is ``y``, shape ``batch``."""
        y = np.asarray(y)
        return (self.predict(params, X) == y).mean(axis=-1)[()]

    def loss(self, params, X, y, l2=0.0, l2_biases=False):
        """The loss of :meth:`loss_and_grad` (the gradient is computed and dropped)."""
        return self.loss_and_grad(params, X, y, l2=l2, l2_biases=l2_biases)[0]


# -- softmax regression -------------------------------------------------------------------------
class SoftmaxRegression(_Classifier):
    r"""Multinomial logistic (softmax) regression: :math:`P = \operatorname{softmax}(XW + b)`.

    Parameters ``{"W": (*batch, d, c), "b": (*batch, c)}``. The loss is the mean cross-entropy
    plus an optional L2 penalty on the weights,

    .. math::
        L(W, b) = \frac{1}{n}\sum_{i=1}^n \Big(\log\sum_k e^{Z_{ik}} - Z_{iy_i}\Big)
                  + \frac{\lambda}{2}\lVert W\rVert_F^2,

    with gradients (:math:`\partial L/\partial Z = (P - Y)/n`, then the chain rule through
    :math:`Z = XW + \mathbf{1}b^\top`)

    .. math::
        \nabla_W L = \frac{1}{n} X^\top (P - Y) + \lambda W, \qquad
        \nabla_b L = \frac{1}{n} (P - Y)^\top \mathbf{1}.

    The loss is convex in :math:`(W, b)`, so zeros are a fine start (every class equally
    likely, loss :math:`\log c`).
    """

    def __init__(self, n_features=64, n_classes=10):
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)

    def __repr__(self):
        return f"SoftmaxRegression(n_features={self.n_features}, n_classes={self.n_classes})"

    def _shapes(self):
        return {"W": (self.n_features, self.n_classes), "b": (self.n_classes,)}

    def init_params(self, rng=None, batch=(), scale=0.0, dtype=np.float64):
        """Parameters for ``batch`` models: zeros, or with ``scale > 0`` weights drawn from
        :math:`\\mathcal{N}(0, \\text{scale}^2)` (one draw shared by the whole batch; ``rng``
        a Generator or seed); biases are zero."""
        batch = _batch_shape(batch)
        d, c = self.n_features, self.n_classes
        W = np.zeros((d, c), dtype=dtype)
        if scale:
            W = (scale * _rng(rng).standard_normal((d, c))).astype(dtype)
        return {"W": np.tile(W, (*batch, 1, 1)), "b": np.zeros((*batch, c), dtype=dtype)}

    def logits(self, params, X):
        batch, dtype = _check_params(params, self._shapes())
        X, _ = _check_data(X, None, self.n_features, self.n_classes, dtype, batch)
        return X @ params["W"] + params["b"][..., None, :]

    def loss_and_grad(self, params, X, y, l2=0.0, l2_biases=False):
        """``(loss, grads)``: the mean cross-entropy (+ ``l2``/2 ||W||^2), of shape ``batch``,
        and ``{"W": dL/dW, "b": dL/db}`` with the parameters' shapes.

        ``l2`` is a number or an array broadcasting against the batch shape (``(K,)``, or
        ``(K, 1, 1)`` like an optimizer's hyperparameter). With ``l2_biases=True`` the penalty
        covers ``b`` too (as torch's ``weight_decay`` does for every parameter).

        ``X`` (n, d) and ``y`` (n,) are shared by the batch of models; ``X`` of shape
        ``(*batch, n, d)`` and ``y`` of shape ``(*batch, n)`` give each model its own samples
        (its own mini-batch, say).
        """
        batch, dtype = _check_params(params, self._shapes())
        X, y = _check_data(X, y, self.n_features, self.n_classes, dtype, batch)
        loss, grads = _by_blocks(_softmax_regression_kernel, params, batch, X, y,
                                 per_model=self.n_classes * X.shape[-2])
        return _add_l2(loss, grads, params, l2, l2_biases, ("W",), batch, dtype), grads


def _softmax_regression_kernel(p, X, y):
    """Loss (K,) and gradients of K softmax regressions ``p["W"]`` (K, d, c), ``p["b"]`` (K, c)."""
    W, b = p["W"], p["b"]
    K, d, c = W.shape
    # One matrix product for all K models: Z[k] = (X W_k + b_k)^T, laid out (K, c, n).
    Z = _forward(W, X)
    Z += b[:, :, None]
    loss, D = _cross_entropy_head(Z, y)                     # D[k] = (P_k - Y)^T / n
    grad_W = _backward(D, X)                                # X^T D
    return loss, {"W": grad_W, "b": D.sum(axis=-1)}


def _forward(W, X):
    """:math:`W_k^\top X_k^\top` for K models: ``W`` (K, d, r), ``X`` (n, d) shared or (K, n, d);
    shape (K, r, n). With a shared X, one matrix product for all K models."""
    K, d, r = W.shape
    if X.ndim == 2:
        return (W.transpose(0, 2, 1).reshape(K * r, d) @ X.T).reshape(K, r, len(X))
    return np.matmul(W.transpose(0, 2, 1), X.transpose(0, 2, 1))


def _backward(D, X):
    """:math:`X_k^\top D_k^\top` for K models: ``D`` (K, r, n); shape (K, d, r)."""
    K, r, n = D.shape
    if X.ndim == 2:
        return (D.reshape(K * r, n) @ X).reshape(K, r, X.shape[1]).transpose(0, 2, 1)
    return np.matmul(D, X).transpose(0, 2, 1)


def _by_blocks(kernel, params, batch, X, y, per_model):
    """Evaluate ``kernel`` on blocks of the ``prod(batch)`` models, each block small enough
    that its largest temporary (``per_model`` values per model) stays near ``BLOCK`` values:
    large temporaries cost page faults on every call and memory grows with the batch.
    Data with batch axes (one data set per model) are cut into the same blocks."""
    K = math.prod(batch)
    flat = {name: a.reshape(K, *a.shape[len(batch):]) for name, a in params.items()}
    own = X.ndim > 2
    if own:
        X, y = X.reshape(K, *X.shape[-2:]), y.reshape(K, -1)
    size = max(1, BLOCK // per_model)
    loss = np.empty(K, dtype=next(iter(flat.values())).dtype)
    grads = {name: np.empty_like(a) for name, a in flat.items()}
    for start in range(0, K, size):
        block = slice(start, start + size)
        loss[block], block_grads = kernel({k: a[block] for k, a in flat.items()},
                                          X[block] if own else X, y[block] if own else y)
        for name, g in block_grads.items():
            grads[name][block] = g
    return loss.reshape(batch), {name: grads[name].reshape(params[name].shape)
                                 for name in params}


def _add_l2(loss, grads, params, l2, l2_biases, weights, batch, dtype):
    r"""Add :math:`\frac{\lambda}{2}\lVert\theta\rVert^2` to ``loss`` and :math:`\lambda\theta`
    to ``grads`` (in place) for the weight matrices, and the biases if ``l2_biases``."""
    lam = _l2_coefficient(l2, batch, dtype)
    if not lam.any():
        return loss[()]
    for name, p in params.items():
        if name in weights or l2_biases:
            extra = p.ndim - len(batch)
            loss = loss + 0.5 * lam * (p * p).sum(axis=tuple(range(-extra, 0)))
            grads[name] += lam.reshape(*batch, *(1,) * extra) * p
    return loss[()]


# -- MLP ----------------------------------------------------------------------------------------
class MLP(_Classifier):
    r"""A one-hidden-layer perceptron: :math:`H = \sigma(XW_1 + b_1)`, :math:`P =
    \operatorname{softmax}(HW_2 + b_2)`, with :math:`\sigma` = ``tanh`` or ``relu``.

    Parameters ``{"W1": (*batch, d, m), "b1": (*batch, m), "W2": (*batch, m, c), "b2": (*batch,
    c)}`` with ``m = n_hidden``. Loss: mean cross-entropy
    :math:`+ \frac{\lambda}{2}(\lVert W_1\rVert_F^2 + \lVert W_2\rVert_F^2)`.

    Backpropagation, from :math:`D = \partial L/\partial Z = (P - Y)/n` with
    :math:`A = XW_1 + \mathbf{1}b_1^\top`, :math:`H = \sigma(A)`, :math:`Z = HW_2 +
    \mathbf{1}b_2^\top`:

    .. math::
        \nabla_{W_2} L = H^\top D, \quad \nabla_{b_2} L = D^\top\mathbf{1}, \quad
        \frac{\partial L}{\partial H} = D W_2^\top, \quad
        \frac{\partial L}{\partial A} = \frac{\partial L}{\partial H} \odot \sigma'(A), \\
        \nabla_{W_1} L = X^\top \frac{\partial L}{\partial A}, \quad
        \nabla_{b_1} L = \Big(\frac{\partial L}{\partial A}\Big)^\top\mathbf{1},

    plus :math:`\lambda W_1` and :math:`\lambda W_2`; :math:`\tanh'(a) = 1 - \tanh^2 a` and
    :math:`\operatorname{relu}'(a) = [a > 0]`.
    """

    def __init__(self, n_features=64, n_hidden=32, n_classes=10, activation="tanh"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
        self.n_features, self.n_hidden, self.n_classes = int(n_features), int(n_hidden), \
            int(n_classes)
        self.activation = activation

    def __repr__(self):
        return (f"MLP(n_features={self.n_features}, n_hidden={self.n_hidden}, "
                f"n_classes={self.n_classes}, activation={self.activation!r})")

    def _shapes(self):
        d, m, c = self.n_features, self.n_hidden, self.n_classes
        return {"W1": (d, m), "b1": (m,), "W2": (m, c), "b2": (c,)}

    def init_params(self, rng, batch=(), shared=True, dtype=np.float64):
        r"""Random weights, zero biases. :math:`W_1` is drawn from :math:`\mathcal{N}(0,
        2/d)` for ``relu`` (He et al., 2015) or :math:`\mathcal{N}(0, 2/(d + m))` for
        ``tanh`` (Glorot & Bengio, 2010); :math:`W_2` from :math:`\mathcal{N}(0, 2/(m + c))`
        (Glorot). ``rng``: a Generator or an integer seed. With ``shared`` (default) every
        model of the batch starts from the same draw (so that a sweep compares hyperparameters
        only); otherwise each model gets its own draw.
        """
        rng, batch = _rng(rng), _batch_shape(batch)
        d, m, c = self.n_features, self.n_hidden, self.n_classes
        std1 = math.sqrt(2.0 / d) if self.activation == "relu" else math.sqrt(2.0 / (d + m))
        std2 = math.sqrt(2.0 / (m + c))
        draw = () if shared else batch
        W1 = std1 * rng.standard_normal((*draw, d, m))
        W2 = std2 * rng.standard_normal((*draw, m, c))
        return {"W1": np.broadcast_to(W1, (*batch, d, m)).astype(dtype),
                "b1": np.zeros((*batch, m), dtype=dtype),
                "W2": np.broadcast_to(W2, (*batch, m, c)).astype(dtype),
                "b2": np.zeros((*batch, c), dtype=dtype)}

    def _hidden(self, A):
        return np.tanh(A) if self.activation == "tanh" else np.maximum(A, 0.0)

    def logits(self, params, X):
        batch, dtype = _check_params(params, self._shapes())
        X, _ = _check_data(X, None, self.n_features, self.n_classes, dtype, batch)
        H = self._hidden(X @ params["W1"] + params["b1"][..., None, :])
        return H @ params["W2"] + params["b2"][..., None, :]

    def loss_and_grad(self, params, X, y, l2=0.0, l2_biases=False):
        """``(loss, grads)`` as :meth:`SoftmaxRegression.loss_and_grad`, for every parameter;
        ``l2`` penalizes ``W1`` and ``W2`` (and the other parameters, biases and a
        normalization gain, if ``l2_biases``). Subclasses supply ``_shapes`` and ``_kernel``."""
        batch, dtype = _check_params(params, self._shapes())
        X, y = _check_data(X, y, self.n_features, self.n_classes, dtype, batch)
        loss, grads = _by_blocks(self._kernel, params, batch, X, y,
                                 per_model=self.n_hidden * X.shape[-2])
        return _add_l2(loss, grads, params, l2, l2_biases, ("W1", "W2"), batch, dtype), grads

    def _kernel(self, p, X, y):
        """Loss (K,) and gradients of K networks whose parameters carry one batch axis."""
        W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
        # Forward, transposed (features x samples): A[k] = (X W1_k + b1_k)^T, shape (K, m, n).
        A = _forward(W1, X)
        A += b1[:, :, None]
        H = self._hidden(A)
        Z = np.matmul(W2.transpose(0, 2, 1), H)             # (K, c, n)
        Z += b2[:, :, None]
        loss, D = _cross_entropy_head(Z, y)                 # D[k] = (P_k - Y)^T / n
        # Backward.
        grad_W2 = np.matmul(H, D.transpose(0, 2, 1))        # H^T D, (K, m, c)
        dA = np.matmul(W2, D)                               # (D W2^T)^T, (K, m, n)
        if self.activation == "tanh":
            H *= H                                          # H is not needed any more:
            np.subtract(1.0, H, out=H)                      # tanh'(A) = 1 - H^2
            dA *= H
        else:
            dA *= A > 0
        grad_W1 = _backward(dA, X)                          # X^T dA
        return loss, {"W1": grad_W1, "b1": dA.sum(axis=-1), "W2": grad_W2,
                      "b2": D.sum(axis=-1)}


# -- MLP with a layer norm ----------------------------------------------------------------------
class LayerNormMLP(MLP):
    r"""The one-hidden-layer MLP with a layer normalization (Ba, Kiros & Hinton, 2016) between
    the hidden linear map and the activation:

    .. math::
        A = XW_1, \quad \mu_i = \frac{1}{m}\sum_j A_{ij}, \quad
        \sigma_i^2 = \frac{1}{m}\sum_j (A_{ij} - \mu_i)^2, \quad
        \hat A_{ij} = \frac{A_{ij} - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}},

        H = \sigma(\hat A \operatorname{diag}(a) + \mathbf{1}b_1^\top), \qquad
        P = \operatorname{softmax}(HW_2 + \mathbf{1}b_2^\top),

    (``torch.nn.LayerNorm(m, eps)`` on :math:`XW_1`, its ``weight`` :math:`a` and ``bias``
    :math:`b_1`). Parameters ``{"W1": (*batch, d, m), "gain": (*batch, m), "b1": (*batch, m),
    "W2": (*batch, m, c), "b2": (*batch, c)}``: :math:`W_1` has no bias of its own (the
    normalization would remove a shared one; :math:`b_1` after it takes its place).

    **Scale invariance.** With ``eps=0`` (the default) :math:`\hat A` and so the loss are
    unchanged by :math:`W_1 \to cW_1` for every :math:`c > 0`: :math:`L(cW_1) = L(W_1)`.
    Differentiating in :math:`c` at 1 gives :math:`\langle\nabla_{W_1}L, W_1\rangle = 0`, and
    differentiating :math:`L(cW_1) = L(W_1)` in :math:`W_1` gives
    :math:`\nabla L(cW_1) = \nabla L(W_1)/c`. (The L2 penalty of ``l2`` is not invariant; with
    ``eps > 0``, as torch's default 1e-5, the invariance holds only while
    :math:`\sigma_i^2 \gg \epsilon`.) ``scale_invariant`` names these parameters.

    **Gradients.** From :math:`D = (P - Y)/n` as in :class:`MLP`, with
    :math:`\tilde A = \hat A\operatorname{diag}(a) + \mathbf{1}b_1^\top`, :math:`s_i =
    \sqrt{\sigma_i^2 + \epsilon}` and :math:`G = \partial L/\partial\tilde A =
    (DW_2^\top) \odot \sigma'(\tilde A)`:

    .. math::
        \nabla_a L = \textstyle\sum_i G_{ij}\hat A_{ij}, \quad \nabla_{b_1} L = G^\top\mathbf{1},
        \quad \hat G = G \operatorname{diag}(a),

        \frac{\partial L}{\partial A_{ij}} = \frac{1}{s_i}\Big(\hat G_{ij}
        - \frac{1}{m}\sum_k \hat G_{ik} - \hat A_{ij}\,\frac{1}{m}\sum_k \hat G_{ik}\hat A_{ik}\Big),
        \qquad \nabla_{W_1} L = X^\top\frac{\partial L}{\partial A},

    (the normalization's Jacobian :math:`\partial\hat A_{ij}/\partial A_{ik} =
    (\delta_{jk} - \frac1m - \hat A_{ij}\hat A_{ik}/m)/s_i`), and :math:`\nabla_{W_2},
    \nabla_{b_2}` as in :class:`MLP`. ``l2`` penalizes :math:`W_1` and :math:`W_2`; with
    ``l2_biases`` also the gain and the biases.
    """

    scale_invariant = ("W1",)
    """The parameters the loss (without ``l2``) does not change under scaling, for ``eps=0``."""

    def __init__(self, n_features=64, n_hidden=32, n_classes=10, activation="tanh", eps=0.0):
        super().__init__(n_features, n_hidden, n_classes, activation)
        check_range("eps", eps)
        self.eps = float(eps)

    def __repr__(self):
        return (f"LayerNormMLP(n_features={self.n_features}, n_hidden={self.n_hidden}, "
                f"n_classes={self.n_classes}, activation={self.activation!r}, eps={self.eps!r})")

    def _shapes(self):
        d, m, c = self.n_features, self.n_hidden, self.n_classes
        return {"W1": (d, m), "gain": (m,), "b1": (m,), "W2": (m, c), "b2": (c,)}

    def init_params(self, rng, batch=(), shared=True, dtype=np.float64):
        """The weights of :meth:`MLP.init_params`, gain 1 and zero biases."""
        params = super().init_params(rng, batch=batch, shared=shared, dtype=dtype)
        params["gain"] = np.ones_like(params["b1"])
        return {name: params[name] for name in self._shapes()}

    def _normalized(self, A):
        """:math:`\\hat A` and :math:`1/s` along the hidden axis ``-2`` of ``A`` (..., m, n)."""
        A = A - A.mean(axis=-2, keepdims=True)
        inv_s = 1.0 / np.sqrt((A * A).mean(axis=-2, keepdims=True) + self.eps)
        A *= inv_s
        return A, inv_s

    def logits(self, params, X):
        batch, dtype = _check_params(params, self._shapes())
        X, _ = _check_data(X, None, self.n_features, self.n_classes, dtype, batch)
        A_hat, _ = self._normalized(np.swapaxes(X @ params["W1"], -1, -2))
        A_hat = np.swapaxes(A_hat, -1, -2)
        H = self._hidden(A_hat * params["gain"][..., None, :] + params["b1"][..., None, :])
        return H @ params["W2"] + params["b2"][..., None, :]

    def _kernel(self, p, X, y):
        """Loss (K,) and gradients of K networks whose parameters carry one batch axis."""
        W1, gain, b1, W2, b2 = p["W1"], p["gain"], p["b1"], p["W2"], p["b2"]
        # Forward, transposed (features x samples), every array (K, m, n).
        A_hat, inv_s = self._normalized(_forward(W1, X))
        H = A_hat * gain[:, :, None]
        H += b1[:, :, None]
        pre = H.copy() if self.activation == "relu" else None
        H = self._hidden(H)
        Z = np.matmul(W2.transpose(0, 2, 1), H)             # (K, c, n)
        Z += b2[:, :, None]
        loss, D = _cross_entropy_head(Z, y)                 # D[k] = (P_k - Y)^T / n
        # Backward.
        grad_W2 = np.matmul(H, D.transpose(0, 2, 1))        # H^T D, (K, m, c)
        G = np.matmul(W2, D)                                # dL/dH, (K, m, n)
        if self.activation == "tanh":
            H *= H
            np.subtract(1.0, H, out=H)                      # tanh' = 1 - H^2
            G *= H
        else:
            G *= pre > 0
        grad_gain = (G * A_hat).sum(axis=-1)
        grad_b1 = G.sum(axis=-1)
        G *= gain[:, :, None]                               # dL/dA_hat
        dA = G - G.mean(axis=1, keepdims=True)
        dA -= A_hat * (G * A_hat).mean(axis=1, keepdims=True)
        dA *= inv_s
        return loss, {"W1": _backward(dA, X), "gain": grad_gain, "b1": grad_b1,
                      "W2": grad_W2, "b2": D.sum(axis=-1)}


# -- training -----------------------------------------------------------------------------------
DIVERGENCE_POLICIES = ("raise", "freeze")


def train(model, opt, params, X, y, steps, *, l2=0.0, l2_biases=False, batch_size=None,
          seed=0, seeds=None, on_divergence="raise"):
    """Train ``params`` with optimizer ``opt`` for ``steps`` updates; return
    ``(params, losses)``.

    ``losses`` has shape ``(steps, *batch)``: the training loss (on the samples used) at the
    parameters *before* each update, the by-product of its gradient. The inputs are not
    modified.

    **Data.** ``X`` (n, d) and ``y`` (n,) are shared by every model of the batch; ``X`` of
    shape ``(*batch, n, d)`` and ``y`` of shape ``(*batch, n)`` give each model its own
    training set (resampled splits, say).

    **Mini-batches.** Full-batch by default. With ``batch_size`` each update uses the next
    ``batch_size`` samples of a fresh random permutation of ``range(n)`` per epoch (the
    incomplete rest of an epoch is dropped). The permutations come from
    ``np.random.default_rng(seed)``, one order shared by every model of the batch; or, with
    ``seeds`` (integers, shape ``batch``), model ``k`` draws its own order from
    ``np.random.default_rng(seeds[k])``: exactly the order a single run with
    ``seed=seeds[k]`` draws, so seeds are real seeds and model ``k`` of the batch is that
    single run (up to rounding in the batched matrix products).

    **Divergence** (``on_divergence``):

    - ``"raise"`` (default): nothing special; a non-finite gradient makes the optimizer raise
      ``FloatingPointError`` naming the step, for the whole batch.
    - ``"freeze"``: a model whose loss or gradient at the current parameters, or whose updated
      parameters, are not finite is *diverged*: its parameters stay at the last finite values
      (those before the update it could not take), its losses are NaN from that step on
      (:func:`diverged_at` reads the step off them), and the other models go on. Its
      optimizer state keeps being updated with zero gradients, and may turn non-finite;
      it is never used again. NumPy's overflow warnings are silenced in this mode.
    """
    X, y = np.asarray(X), np.asarray(y)
    check_choice("on_divergence", on_divergence, DIVERGENCE_POLICIES)
    batch, _ = _check_params(params, model._shapes())
    n = X.shape[-2] if X.ndim >= 2 else 0
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in 1..{n} (the number of samples); "
                         f"got {batch_size!r}")
    draw = _batch_orders(batch, n, batch_size, seed, seeds)
    freeze = on_divergence == "freeze"
    update = getattr(opt, "_update", None) if freeze else None
    state = opt.init(params)
    dtype = np.result_type(*params.values())
    losses = np.full((steps, *batch), np.nan, dtype=dtype) if freeze else []
    alive = np.ones(batch, dtype=bool)
    for step in range(steps):
        Xb, yb = _gather(X, y, draw(), batch)
        if not freeze:
            loss, grads = model.loss_and_grad(params, Xb, yb, l2=l2, l2_biases=l2_biases)
            updates, state = opt.update(grads, state, params)
            params = apply_updates(params, updates)
            losses.append(loss)
            continue
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, grads = model.loss_and_grad(params, Xb, yb, l2=l2, l2_biases=l2_biases)
            alive = alive & np.isfinite(loss) & _rows_finite(grads, batch)
            grads = _where_rows(alive, grads, 0.0, batch)
            if update is not None:
                updates, state = update(grads, state, params, check_updates=False)
            else:
                updates, state = opt.update(grads, state, params)
            proposal = apply_updates(params, updates)
            alive = alive & _rows_finite(proposal, batch)
        params = _where_rows(alive, proposal, params, batch)
        losses[step] = np.where(alive, loss, np.nan)
    return params, np.array(losses)


def diverged_at(losses):
    """The step at which each run of :func:`train` with ``on_divergence="freeze"`` stopped
    (the first NaN loss, steps along axis 0), or -1 for a run that took every step."""
    stopped = np.isnan(np.asarray(losses, dtype=float))
    return np.where(stopped.any(axis=0), stopped.argmax(axis=0), -1)


def init_runs(model, seeds, **kwargs):
    """Parameters for a batch of runs with real seeds: run ``k`` (any index of the array
    ``seeds``) starts from ``model.init_params(seeds[k], **kwargs)``, exactly; the batch
    shape is ``seeds``' shape."""
    seeds = np.asarray(seeds)
    if seeds.ndim == 0 or seeds.dtype.kind not in "iu":
        raise TypeError(f"seeds must be an array of integers with the batch shape; got {seeds!r}")
    runs = [model.init_params(int(s), **kwargs) for s in seeds.ravel()]
    return {name: np.stack([r[name] for r in runs]).reshape(*seeds.shape, *runs[0][name].shape)
            for name in runs[0]}


def _batch_orders(batch, n, batch_size, seed, seeds):
    """A function returning the sample indices of the next mini-batch: None (every sample),
    ``(batch_size,)`` shared by the batch, or ``(K, batch_size)`` with one order per model."""
    if seeds is not None:
        if batch_size is None:
            raise ValueError("seeds (one mini-batch order per model) need a batch_size")
        seeds = np.asarray(seeds)
        if seeds.shape != batch or seeds.dtype.kind not in "iu":
            raise ValueError(f"seeds must be integers of the batch shape {batch} (one per "
                             f"model); got {seeds.dtype} of shape {seeds.shape}")
        rngs = [np.random.default_rng(int(s)) for s in seeds.ravel()]
    elif batch_size is not None:
        rngs = None
        rng = np.random.default_rng(seed)
    orders, pos = None, n

    def draw():
        nonlocal orders, pos
        if batch_size is None:
            return None
        if pos + batch_size > n:
            orders = (rng.permutation(n) if rngs is None
                      else np.stack([r.permutation(n) for r in rngs]))
            pos = 0
        pos += batch_size
        return orders[..., pos - batch_size:pos]

    return draw


def _gather(X, y, idx, batch):
    """The samples ``idx`` of the data, for every model: shared data and a shared order give
    (b, d); anything per model gives (*batch, b, d)."""
    if idx is None:
        return X, y
    K, b = math.prod(batch), idx.shape[-1]
    if X.ndim == 2:
        if idx.ndim == 1:
            return X[idx], y[idx]
        return X[idx].reshape(*batch, b, -1), y[idx].reshape(*batch, b)
    Xf, yf = X.reshape(K, *X.shape[-2:]), y.reshape(K, -1)
    rows = np.arange(K)[:, None]
    idx = np.broadcast_to(idx, (K, b))
    return Xf[rows, idx].reshape(*batch, b, -1), yf[rows, idx].reshape(*batch, b)


def _rows_finite(tree, batch):
    """Per model of the batch: True if every value of every array of ``tree`` is finite."""
    ok = np.ones(batch, dtype=bool)
    for a in tree.values():
        ok &= np.isfinite(a).all(axis=tuple(range(len(batch), a.ndim)))
    return ok


def _where_rows(keep, tree, other, batch):
    """``tree`` for the models where ``keep``, ``other`` (a tree or a number) elsewhere."""
    out = {}
    for name, a in tree.items():
        k = keep.reshape(*batch, *(1,) * (a.ndim - len(batch)))
        b = other[name] if isinstance(other, dict) else other
        out[name] = np.where(k, a, b).astype(a.dtype, copy=False)
    return out
