"""Sparse autoencoders (JAX + optax): the interpretability method the superposition harness
scores first.

An SAE rewrites each residual vector x [d] as a sparse, non-negative code z [m] over a
dictionary of m directions (the rows of `w_dec`):

    z = relu((x - b_dec) @ w_enc + b_enc)        ("relu": sparsity from an L1 penalty on z)
    z = the k largest of those, the rest 0       ("topk": exactly k latents fire)
    x_hat = z @ w_dec + b_dec

trained to minimise mean ||x - x_hat||^2 (+ l1 * mean sum z for "relu"), with the
dictionary rows renormalised to unit length after every step (so the L1 penalty cannot be
dodged by shrinking z and growing w_dec). Inputs are scaled so their mean squared distance
from the mean is 1 (`scale`); `encode`, `decode` and `reconstruct` undo it, so the defaults
(l1, learning rate) suit any model. Like `compress`, training is jitted, several steps per
call, on the default JAX device, and deterministic for a seed.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler.compiler.size import DEFAULT_MAX_PARAMETERS
from rasp_compiler.errors import InvalidInputError
from rasp_compiler.progress import StepProgress
from rasp_compiler.verify.inputs import check_seed

KINDS = ("relu", "topk")
STEPS_PER_CALL = 100


@dataclass(frozen=True)
class SAEInfo:
    kind: str
    latents: int
    k: int  # topk: latents firing per input (0 for relu)
    l1: float  # relu: the L1 coefficient (0 for topk)
    steps: int
    batch_size: int
    learning_rate: float
    seed: int
    samples: int  # training vectors
    mse: float  # final mean squared error on all of them (scaled units)
    seconds: float


@dataclass(frozen=True, eq=False)
class SparseAutoencoder:
    """A trained SAE; arrays are numpy, in the units of the data it was trained on."""

    w_enc: np.ndarray  # [d, m]
    b_enc: np.ndarray  # [m]
    w_dec: np.ndarray  # [m, d], unit rows: the dictionary
    b_dec: np.ndarray  # [d] (scaled units)
    scale: float  # the data were divided by this before training
    info: SAEInfo

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def directions(self) -> np.ndarray:
        """The dictionary [m, d]: one unit direction per latent."""
        return self.w_dec

    def encode(self, x) -> np.ndarray:
        """Codes [N, m] of residual vectors x [N, d] (non-negative; zero where a latent is off)."""
        return np.asarray(_encode(self._params(), jnp.asarray(x, jnp.float32) / self.scale,
                                  self.info.kind, self.info.k))

    def decode(self, codes) -> np.ndarray:
        return (np.asarray(codes, np.float32) @ self.w_dec + self.b_dec) * self.scale

    def reconstruct(self, x) -> np.ndarray:
        return self.decode(self.encode(x))

    def _params(self) -> dict:
        return {"w_enc": self.w_enc, "b_enc": self.b_enc, "w_dec": self.w_dec, "b_dec": self.b_dec}

    def __repr__(self) -> str:
        i = self.info
        sparsity = f"k={i.k}" if i.kind == "topk" else f"l1={i.l1:g}"
        return (f"SparseAutoencoder({i.kind}, {self.w_dec.shape[1]} -> {i.latents} latents, "
                f"{sparsity}, {i.steps} steps on {i.samples:,} vectors, mse {i.mse:.4g})")


def _encode(params, x, kind: str, k: int):
    pre = (x - params["b_dec"]) @ params["w_enc"] + params["b_enc"]
    z = jax.nn.relu(pre)
    if kind == "topk":
        kth = jax.lax.top_k(pre, k)[0][..., -1:]
        z = jnp.where(pre >= kth, z, 0.0)
    return z


def _unit_rows(w):
    return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-8)


@dataclass(frozen=True)
class _SaeSetup:
    """The static settings of one SAE training run (jitted code is reused per setup)."""

    kind: str
    k: int
    batch: int
    learning_rate: float


def _loss(params, xb, penalty, setup: _SaeSetup):
    z = _encode(params, xb, setup.kind, setup.k)
    mse = jnp.mean(jnp.sum((z @ params["w_dec"] + params["b_dec"] - xb) ** 2, axis=-1))
    return mse + penalty * jnp.mean(jnp.sum(z, axis=-1))


@functools.partial(jax.jit, static_argnames="setup")
def _train_steps(params, opt_state, key, count, data, penalty, setup: _SaeSetup):
    """`count` Adam steps in one call, the dictionary renormalised after each."""
    import optax

    optimiser = optax.adam(setup.learning_rate)
    n = data.shape[0]

    def body(_, carry):
        params, opt_state, key = carry
        key, sub = jax.random.split(key)
        xb = data if setup.batch == n else data[jax.random.randint(sub, (setup.batch,), 0, n)]
        grads = jax.grad(_loss)(params, xb, penalty, setup)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return {**params, "w_dec": _unit_rows(params["w_dec"])}, opt_state, key

    return jax.lax.fori_loop(0, count, body, (params, opt_state, key))


@functools.partial(jax.jit, static_argnames="setup")
def _mse(params, data, setup: _SaeSetup):
    z = _encode(params, data, setup.kind, setup.k)
    return jnp.mean(jnp.sum((z @ params["w_dec"] + params["b_dec"] - data) ** 2, axis=-1))


def _data(data) -> np.ndarray:
    """An [N, d] float array from an array or a ResidualSample (its compressed residual)."""
    array = getattr(data, "compressed", data)
    try:
        array = np.asarray(array, np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"SAE training data must be an [N, d] array of numbers or a "
                                f"ResidualSample, got {type(data).__name__}") from None
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise InvalidInputError(f"SAE training data must be a non-empty [N, d] array, got "
                                f"shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidInputError("SAE training data holds NaN or infinite values")
    return array


def train_sae(data, latents: int, *, kind: str = "relu", l1: float = 0.1, k: int | None = None,
              steps: int = 2000, batch_size: int = 512, learning_rate: float = 1e-2,
              seed: int = 0, progress: bool = False) -> SparseAutoencoder:
    """Train an SAE with `latents` dictionary directions on `data` [N, d] (or a
    ResidualSample, e.g. from `superposition.residual_sample`).

    `kind="relu"` penalises `l1` * the summed codes; `kind="topk"` keeps the `k` largest
    pre-activations (k required). Adam, `steps` steps on random batches of `batch_size`
    vectors (the whole data when smaller).
    """
    import optax

    x = _data(data)
    for name, value, least in (("latents", latents, 1), ("steps", steps, 0),
                               ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InvalidInputError(f"{name} must be a whole number >= {least}, got {value!r}")
    check_seed(seed, jax_key=True)
    size = latents * (2 * x.shape[1] + 1)  # encoder, decoder, biases: bounded before allocating
    if size > DEFAULT_MAX_PARAMETERS:
        raise InvalidInputError(f"latents={latents:,} gives the SAE {size:,} parameters, more "
                                f"than {DEFAULT_MAX_PARAMETERS:,}")
    if kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "topk":
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= latents:
            raise InvalidInputError(f"kind='topk' needs k, the latents firing per input, in "
                                    f"1..{latents}; got k={k!r}")
    elif k is not None:
        raise InvalidInputError("k is the TopK sparsity; with kind='relu' set l1 instead")
    for name, value in (("l1", l1), ("learning_rate", learning_rate)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
                or value < 0:
            raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    started = time.perf_counter()
    n, d = x.shape
    spread = float(np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, axis=1))))
    scale = spread if spread > 1e-12 else 1.0
    data_device = jnp.asarray(x / scale)
    key_init, key_data = jax.random.split(jax.random.PRNGKey(int(seed)))
    w_dec = _unit_rows(jax.random.normal(key_init, (latents, d), jnp.float32))
    params = {"w_enc": w_dec.T, "b_enc": jnp.zeros((latents,), jnp.float32), "w_dec": w_dec,
              "b_dec": data_device.mean(0)}
    k = int(k or 0)
    penalty = float(l1) if kind == "relu" else 0.0
    batch = min(batch_size, n)
    setup = _SaeSetup(kind, k, batch, float(learning_rate))
    opt_state = optax.adam(setup.learning_rate).init(params)
    bar = StepProgress(f"SAE ({kind}, {latents} latents)", steps) if progress else None
    done, key = 0, key_data
    while done < steps:
        count = min(STEPS_PER_CALL, steps - done)
        params, opt_state, key = _train_steps(params, opt_state, key, count, data_device,
                                              penalty, setup=setup)
        done += count
        if bar:
            bar.update(done, mse=float(_mse(params, data_device, setup=setup)))
    if bar:
        bar.close()
    info = SAEInfo(kind=kind, latents=latents, k=k, l1=penalty, steps=done, batch_size=batch,
                   learning_rate=float(learning_rate), seed=seed, samples=n,
                   mse=float(_mse(params, data_device, setup=setup)),
                   seconds=time.perf_counter() - started)
    arrays = {name: np.asarray(value, np.float32) for name, value in params.items()}
    return SparseAutoencoder(arrays["w_enc"], arrays["b_enc"], arrays["w_dec"], arrays["b_dec"],
                             scale, info)


__all__ = ["SAEInfo", "SparseAutoencoder", "train_sae"]
