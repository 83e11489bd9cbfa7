"""The traced functions that train and score a supernet, and its weight checkpoints.

Each function is traced once: paths are dicts of fixed-shape tensors, batches have a fixed size,
and the BN momentum used for recalibration lives in a variable. `trace_counts` counts the traces
(a test checks that sampling paths never adds one).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterable, Mapping

import numpy as np


class SupernetRunner:
  """Training, scoring, BN recalibration and evaluation steps over one supernet.

  Args:
    net: the supernet (`supernet.make_supernet`).
    optimizer: a Keras 3 optimizer for the shared weights.
    loss: a Keras loss on (integer labels, logits).
    calib_rows: rows of the calibration (training) batch that `score` puts in front of the
      validation batch; its BN statistics normalize the validation rows.
  """

  def __init__(self, net: Any, optimizer: Any, loss: Any, calib_rows: int):
    import tensorflow as tf
    self._tf = tf
    self.net = net
    self.optimizer = optimizer
    self.loss = loss
    self.calib_rows = int(calib_rows)
    self.trace_counts = {"train": 0, "score": 0, "recalibrate": 0, "infer": 0, "grads": 0, "apply": 0}
    self.optimizer.build(net.trainable_weights)
    self._train_fn = tf.function(self._train_impl)
    self._grads_fn = tf.function(self._grads_impl)
    self._apply_fn = tf.function(self._apply_impl)
    self._score_fn = tf.function(self._score_impl)
    self._recal_fn = tf.function(self._recal_impl)
    self._infer_fn = tf.function(self._infer_impl)

  # --------------------------------------------------------------------------- traced bodies
  def _train_impl(self, x, y, path):
    self.trace_counts["train"] += 1  # runs only while tracing
    tf = self._tf
    weights = self.net.trainable_weights
    with tf.GradientTape() as tape:
      logits = self.net.apply(x, path, "train")
      loss = self.loss(y, logits)
    grads = tape.gradient(loss, weights)
    self.optimizer.apply_gradients(zip(grads, weights))
    correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                              tf.cast(tf.reshape(y, [-1]), tf.int32)), tf.float32))
    return loss, correct

  def _grads_impl(self, x, y, path):
    self.trace_counts["grads"] += 1
    tf = self._tf
    with tf.GradientTape() as tape:
      logits = self.net.apply(x, path, "train")
      loss = self.loss(y, logits)
    grads = tape.gradient(loss, self.net.trainable_weights)
    # A weight no path op touched (e.g. a masked-out kernel) has no gradient: zeros keep one signature.
    grads = [tf.zeros_like(w) if g is None else g for g, w in zip(grads, self.net.trainable_weights)]
    correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                              tf.cast(tf.reshape(y, [-1]), tf.int32)), tf.float32))
    return loss, correct, grads

  def _apply_impl(self, grads):
    self.trace_counts["apply"] += 1
    self.optimizer.apply_gradients(zip(grads, self.net.trainable_weights))
    return self._tf.constant(0)

  def _score_impl(self, x_calib, x_val, y_val, path):
    self.trace_counts["score"] += 1
    tf = self._tf
    logits = self.net.apply(tf.concat([x_calib, x_val], 0), path, "score", self.calib_rows)
    logits = logits[self.calib_rows:]
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                           tf.cast(tf.reshape(y_val, [-1]), tf.int32)), tf.float32))

  def _recal_impl(self, x, path):
    self.trace_counts["recalibrate"] += 1
    self.net.apply(x, path, "train")
    return self._tf.constant(0)

  def _infer_impl(self, x, path):
    self.trace_counts["infer"] += 1
    return self.net.apply(x, path, "infer")

  # --------------------------------------------------------------------------- public steps
  def path_tensors(self, path: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {k: self._tf.constant(v, self._tf.float32) for k, v in path.items()}

  def train_step(self, x: np.ndarray, y: np.ndarray, path: Mapping[str, Any]) -> tuple[float, float]:
    """One SGD step of the shared weights along `path`; returns (loss, batch accuracy)."""
    loss, acc = self._train_fn(x, y, self._as_tensors(path))
    return float(loss), float(acc)

  def train_step_paths(self, x: np.ndarray, y: np.ndarray,
                       paths: list[Mapping[str, Any]]) -> tuple[float, float]:
    """One step of the shared weights along several paths on the same batch: their gradients are
    averaged, then applied once (BigNAS's sandwich rule, OFA). Returns the mean (loss, accuracy)."""
    if len(paths) == 1:
      return self.train_step(x, y, paths[0])
    total, losses, accs = None, [], []
    for path in paths:
      loss, acc, grads = self._grads_fn(x, y, self._as_tensors(path))
      total = list(grads) if total is None else [a + g for a, g in zip(total, grads)]
      losses.append(float(loss))
      accs.append(float(acc))
    self._apply_fn([g / len(paths) for g in total])
    return float(np.mean(losses)), float(np.mean(accs))

  def score(self, x_calib: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
            path: Mapping[str, Any]) -> float:
    """Accuracy of `path` on a validation batch, BN statistics taken from a training batch."""
    return float(self._score_fn(x_calib, x_val, y_val, self._as_tensors(path)))

  def recalibrate(self, path: Mapping[str, Any], batches: Iterable[np.ndarray]) -> int:
    """Sets every BN moving average to the mean of its batch statistics over `batches` along `path`.

    Returns:
      How many batches were used.
    """
    tensors = self._as_tensors(path)
    n = 0
    try:
      for x in batches:
        # momentum n/(n+1): the moving average becomes the running mean of the batch statistics.
        self.net.bn_momentum.assign(n / (n + 1.0))
        self._recal_fn(x, tensors)
        n += 1
    finally:
      self.net.bn_momentum.assign(self.net.train_momentum)
    return n

  def logits(self, x: np.ndarray, path: Mapping[str, Any]) -> np.ndarray:
    """Inference-mode logits (BN moving averages)."""
    return np.asarray(self._infer_fn(x, self._as_tensors(path)))

  def accuracy(self, images: np.ndarray, labels: np.ndarray, path: Mapping[str, Any],
               batch_size: int) -> float:
    """Inference-mode accuracy over all `images`; the last batch is padded (one traced shape)."""
    tensors = self._as_tensors(path)
    correct = 0
    for start in range(0, len(images), batch_size):
      x = images[start:start + batch_size]
      n = len(x)
      if n < batch_size:
        x = np.concatenate([x, np.zeros((batch_size - n,) + x.shape[1:], x.dtype)])
      pred = np.asarray(self._infer_fn(x, tensors)).argmax(-1)[:n]
      correct += int((pred == np.asarray(labels[start:start + n]).reshape(-1)).sum())
    return correct / max(1, len(images))

  def _as_tensors(self, path):
    first = next(iter(path.values()))
    return self.path_tensors(path) if isinstance(first, np.ndarray) else path

  # --------------------------------------------------------------------------- checkpoints
  def _variables(self) -> list:
    return list(self.net.weights) + list(self.optimizer.variables)

  def save_weights(self, path: str) -> None:
    """Writes every supernet and optimizer variable to `path` (.npz) atomically."""
    arrays = {f"v{i:05d}": np.asarray(v) for i, v in enumerate(self._variables())}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".weights.", suffix=".npz", dir=folder)
    try:
      with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.unlink(tmp)
      raise

  def load_weights(self, path: str) -> None:
    """Restores what `save_weights` wrote; the variables must have the same shapes."""
    variables = self._variables()
    with np.load(path) as data:
      if len(data.files) != len(variables):
        raise ValueError(f"{path!r} holds {len(data.files)} variables; this supernet and optimizer "
                         f"have {len(variables)} (a checkpoint of other settings?)")
      for i, v in enumerate(variables):
        value = data[f"v{i:05d}"]
        if tuple(value.shape) != tuple(v.shape):
          raise ValueError(f"{path!r}: variable {i} ({v.path}) has shape {value.shape}; expected "
                           f"{tuple(v.shape)}")
        v.assign(value)
