"""Sharpness-aware minimisation (Foret et al., 2021) for plain `model.fit`.

Each training step computes the gradient `g` at the weights `w`, moves to
`w + e` with `e = rho * g / (||g|| + epsilon)` (the steepest ascent within an
L2 ball of radius `rho`, `||g||` the global norm over every trainable
weight), computes the gradient `g'` there and lets the model's own optimizer
apply `g'` at `w`. Every step costs two forward and two backward passes.

Usage: `kerascnn.training.sam.enable_sam(model, rho=0.05)` after `compile`, then
`model.fit(...)` as usual. The model is not wrapped: `enable_sam` replaces
the *instance's* `train_step`, so `model.save`, `model.get_config`, callbacks
and `evaluate`/`predict` are untouched. SAM is a training procedure, not part
of the architecture: a reloaded model trains plainly until `enable_sam` is
called on it again. `disable_sam(model)` restores the standard step.

Details:

- The perturbed pass does not touch the variables: the model is called
  inside a `keras.StatelessScope` that maps each trainable variable to
  `w + e`, so no weight is written twice and nothing needs restoring if the
  step fails. Its batch-norm statistic updates and metric updates are
  discarded; the reported loss and metrics are those at `w` (the first pass
  updates the batch-norm statistics once, as a plain step would).
- Distribution (`tf.distribute.MirroredStrategy` and other synchronous
  strategies): `g` is all-reduced across replicas before its norm is taken,
  so every replica uses the same `e`, computed from the global batch, which
  is the algorithm of the paper. (Composer and the `davda54/sam` PyTorch code
  compute `e` per GPU from the local batch under DDP, "m-sharpness" with `m`
  the per-GPU batch; results then depend on the number of devices.) `g'` is
  aggregated by the optimizer as in any Keras step.
- `rho=0.05` and `epsilon=1e-12` are the paper's and Composer's defaults
  (`composer/algorithms/sam/sam.py`: `SAMOptimizer(rho=0.05, epsilon=1.0e-12)`).
- TensorFlow backend only (the `train_step` it installs uses `tf.GradientTape`).

Example:

>>> import keras, numpy as np
>>> from kerascnn.training.sam import enable_sam
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
>>> model.compile(optimizer="sgd", loss="mse")
>>> enable_sam(model, rho=0.05)
>>> _ = model.fit(np.ones((8, 4)), np.ones((8, 1)), verbose=0)
"""

from __future__ import annotations

import types

import keras

_SAM_ATTR = "_kerascnn_sam"


def _check_args(rho, epsilon):
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or rho < 0:
        raise ValueError(f"rho must be a non-negative number. Received: rho={rho!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
        raise ValueError(f"epsilon must be a positive number. Received: epsilon={epsilon!r}")


def sam_train_step(model, data, rho=0.05, epsilon=1e-12):
    """One SAM training step of `model` on `data` (what `enable_sam` installs).

    Usable directly from a subclassed model's `train_step`:
    `return kerascnn.training.sam.sam_train_step(self, data, rho=0.05)`.

    Args:
        model: a compiled `keras.Model`.
        data: a batch as `fit` passes it: `x`, `(x, y)` or `(x, y, sample_weight)`.
        rho: neighbourhood radius. Defaults to 0.05.
        epsilon: added to the gradient norm. Defaults to 1e-12.

    Returns:
        The metric results, as `keras.Model.train_step` returns them.
    """
    import keras
    import tensorflow as tf

    from kerascnn._keras_compat import unpack_x_y_sample_weight, unscale_loss_for_distribution

    x, y, sample_weight = unpack_x_y_sample_weight(data)
    trainable = list(model.trainable_variables)
    if not trainable:
        raise ValueError("SAM needs trainable weights; the model has none.")

    def forward(training_model):
        if model._call_has_training_arg:
            return training_model(x, training=True)
        return training_model(x)

    # First pass at w: the usual forward/backward (updates BN statistics).
    with tf.GradientTape() as tape:
        y_pred = forward(model)
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
        model._loss_tracker.update_state(
            unscale_loss_for_distribution(loss),
            sample_weight=tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0],
        )
    grads = tape.gradient(loss, trainable)

    # The global gradient: sum over replicas (identity without a strategy).
    # Only its direction matters, so the per-replica loss scaling cancels.
    present = [g for g in grads if g is not None]
    replica_context = tf.distribute.get_replica_context()
    if replica_context is not None and replica_context.num_replicas_in_sync > 1:
        present = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, present)
    it = iter(present)
    grads = [None if g is None else next(it) for g in grads]
    norm = tf.linalg.global_norm([g for g in grads if g is not None])
    scale = tf.cast(rho, norm.dtype) / (norm + tf.cast(epsilon, norm.dtype))

    perturbed = []
    for variable, grad in zip(trainable, grads):
        value = tf.convert_to_tensor(variable.value)
        if grad is not None:
            value = value + tf.cast(scale, value.dtype) * tf.cast(grad, value.dtype)
        perturbed.append(value)

    # Second pass at w + e, without writing any variable.
    with tf.GradientTape() as tape:
        tape.watch(perturbed)
        with keras.StatelessScope(state_mapping=list(zip(trainable, perturbed))):
            y_pred_sharp = forward(model)
            loss_sharp = model._compute_loss(
                x=x, y=y, y_pred=y_pred_sharp, sample_weight=sample_weight, training=True
            )
        if model.optimizer is not None:
            loss_sharp = model.optimizer.scale_loss(loss_sharp)
    sharp_grads = tape.gradient(loss_sharp, perturbed)
    model.optimizer.apply_gradients(zip(sharp_grads, trainable))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def enable_sam(model, rho=0.05, epsilon=1e-12):
    """Makes `model.fit` train `model` with sharpness-aware minimisation.

    Call after `model.compile(...)` (or before: `compile` keeps the step).
    Calling it again changes `rho`/`epsilon`.

    Args:
        model: a `keras.Model` (TensorFlow backend).
        rho: neighbourhood radius; 0 gives plain training at twice the cost.
            Defaults to 0.05.
        epsilon: added to the gradient norm for stability. Defaults to 1e-12.

    Returns:
        `model`, for chaining.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model. Received: {type(model).__name__}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "kerascnn.training.sam supports the TensorFlow backend only. "
            f"Received: backend={keras.backend.backend()!r}"
        )
    _check_args(rho, epsilon)
    rho, epsilon = float(rho), float(epsilon)
    if rho == 0:
        import warnings

        from kerascnn._warnings import NoEffectWarning

        warnings.warn(
            "enable_sam(rho=0) trains exactly as without SAM, at twice the cost per step. "
            "Pass rho > 0 (the paper's and Composer's 0.05).",
            NoEffectWarning,
            stacklevel=2,
        )

    def train_step(self, data):
        return sam_train_step(self, data, rho=rho, epsilon=epsilon)

    model.train_step = types.MethodType(train_step, model)
    setattr(model, _SAM_ATTR, (rho, epsilon))
    # Force `fit` to trace the new step.
    model.train_function = None
    return model


def disable_sam(model):
    """Restores the standard `train_step` of a model `enable_sam` changed."""
    if "train_step" in vars(model):
        del model.train_step
    if hasattr(model, _SAM_ATTR):
        delattr(model, _SAM_ATTR)
    model.train_function = None
    return model


def sam_settings(model):
    """`{"rho": ..., "epsilon": ...}` if SAM is enabled on `model`, else None."""
    settings = getattr(model, _SAM_ATTR, None)
    return None if settings is None else {"rho": settings[0], "epsilon": settings[1]}
