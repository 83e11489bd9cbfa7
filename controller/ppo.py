"""The default controller: an LSTM policy trained with PPO (tf-agents' PPOClipAgent).

One episode is one architecture. Step t emits decision t; its observation is
the one-hot of t, the one-hot of the previous action and a bias. The actor is
an LSTM whose logits are masked to the decision's valid options, so an invalid
option is never sampled (no modulo folding). The value network is an LSTM too.

Sampling runs the actor one step at a time for the whole batch and draws each
action with the controller's own numpy Generator (inverse CDF on the masked
softmax). That makes the samples a pure function of the saved state: a
restored controller proposes exactly what the uninterrupted one would have.
The logits of each step travel with the sample (`Sample.info`), because PPO's
importance ratio needs the probabilities that the sample was drawn from.

Rewards arrive later, so `update` assembles the trajectories after the fact:
D decision steps and a terminal step, with the reward on the last decision,
discount 1 and λ 1, so each step's advantage is the reward minus the value
network's prediction (tf-agents then normalizes advantages per batch). As in
MnasNet, the reward can first be centred by an exponential moving average of
past rewards (`baseline_decay`), which keeps the value targets small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import tensorflow as tf

from controller import categorical, quiet_tf_agents_import
from controller.base import Controller, Sample, advance_baseline, check_bool, check_float
from nas_common import check_int

if "tf_keras" not in tf.keras.__name__:
  raise ImportError("controller.ppo needs legacy Keras (tf_keras) behind tf.keras: set "
                    "TF_USE_LEGACY_KERAS=1 before tf.keras is first used (controller.make('ppo', ...) "
                    "and controller.use_legacy_keras() do that)")

with quiet_tf_agents_import():
  import tensorflow_probability as tfp
  from tf_agents.agents.ppo import ppo_clip_agent
  from tf_agents.networks import lstm_encoding_network, network, value_rnn_network
  from tf_agents.specs import distribution_spec, tensor_spec
  from tf_agents.trajectories import time_step as ts
  from tf_agents.trajectories import trajectory
  from tf_agents.utils import common

_TF_CHECKPOINT = "tf"
_ENTROPY_SAMPLES = 64
_ENTROPY_SEED = 0
_MASKED_LOGIT = -1e9
_HEAD_INIT_SCALE = 0.1  # small initial logits: the search starts near uniform


@contextlib.contextmanager
def _quiet_autograph() -> Iterator[None]:
  # Autograph's conversion of tf-agents code (`state is not ()`) raises a
  # SyntaxWarning on every trace; it is harmless.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", SyntaxWarning)
    yield


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """Hparams of the PPO controller.

  Attributes:
    learning_rate: Adam step size.
    entropy_regularization: weight of the entropy bonus in the PPO loss.
    importance_ratio_clipping: PPO's ε (the ratio is clipped to [1−ε, 1+ε]).
    num_epochs: gradient steps per batch.
    lstm_size: units of the actor's and the value network's LSTM.
    normalize_rewards: scale rewards by tf-agents' running reward statistics.
    baseline_decay: momentum of the moving-average reward baseline subtracted
      from each reward before PPO sees it (MnasNet); None feeds rewards as they are.
  """

  learning_rate: float = 5e-3
  entropy_regularization: float = 1e-3
  importance_ratio_clipping: float = 0.2
  num_epochs: int = 8
  lstm_size: int = 64
  normalize_rewards: bool = False
  baseline_decay: Optional[float] = 0.9

  def __post_init__(self):
    check_float("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
    check_float("entropy_regularization", self.entropy_regularization, 0.0, 1.0)
    check_float("importance_ratio_clipping", self.importance_ratio_clipping, 0.0, 1.0,
                low_open=True)
    check_int("num_epochs", self.num_epochs, 1)
    check_int("lstm_size", self.lstm_size, 1)
    check_bool("normalize_rewards", self.normalize_rewards)
    if self.baseline_decay is not None:
      check_float("baseline_decay", self.baseline_decay, 0.0, 1.0, high_open=True)


class MaskedActorNetwork(network.DistributionNetwork):
  """An LSTM actor whose categorical logits are masked to the current decision's options.

  The decision is read from the first `mask.shape[0]` entries of the
  observation (its one-hot); an observation with no decision (the terminal
  step) gets all options, which no loss uses.
  """

  def __init__(self, observation_spec, action_spec, mask: np.ndarray, lstm_size: int):
    encoder = lstm_encoding_network.LSTMEncodingNetwork(
        observation_spec, input_fc_layer_params=None, lstm_size=(lstm_size,),
        output_fc_layer_params=None)
    num_options = mask.shape[1]
    output_spec = distribution_spec.DistributionSpec(
        tfp.distributions.Categorical,
        {"logits": tensor_spec.TensorSpec([num_options], tf.float32)},
        sample_spec=action_spec, dtype=tf.int32)
    super().__init__(observation_spec, encoder.state_spec, output_spec, name="MaskedActorNetwork")
    self._encoder = encoder
    self._head = tf.keras.layers.Dense(num_options, name="logits")
    self._mask = tf.constant(mask, tf.float32)
    self._num_decisions = mask.shape[0]

  @property
  def head(self) -> tf.keras.layers.Dense:
    return self._head

  def call(self, observation, step_type=None, network_state=(), training=False):
    hidden, state = self._encoder(observation, step_type=step_type, network_state=network_state,
                                  training=training)
    valid = tf.einsum("...d,da->...a", observation[..., :self._num_decisions], self._mask)
    no_decision = tf.reduce_sum(valid, axis=-1, keepdims=True) == 0
    logits = tf.where((valid > 0) | no_decision, self._head(hidden), _MASKED_LOGIT)
    return tfp.distributions.Categorical(logits=logits, dtype=tf.int32), state


class PPOController(Controller):
  """PPO over an LSTM policy (see the module docstring).

  Args:
    arities: how many options each decision has.
    seed: seeds the initial weights and the numpy Generator that draws the samples.
    learning_rate, entropy_regularization, importance_ratio_clipping,
    num_epochs, lstm_size, normalize_rewards, baseline_decay: see `PPOConfig`.
  """

  NAME = "ppo"
  Config = PPOConfig

  def __init__(self, arities, seed: int = 0, **hparams):
    super().__init__(arities, seed, **hparams)
    cfg = self.config
    self._mask = categorical.option_mask(self._arities)
    d, a = self._mask.shape
    obs_spec = tensor_spec.TensorSpec([d + a + 1], tf.float32)
    act_spec = tensor_spec.BoundedTensorSpec([], tf.int32, 0, a - 1)
    self._actor = MaskedActorNetwork(obs_spec, act_spec, self._mask, cfg.lstm_size)
    self._value = value_rnn_network.ValueRnnNetwork(
        obs_spec, input_fc_layer_params=None, lstm_size=(cfg.lstm_size,),
        output_fc_layer_params=None)
    self._optimizer = tf.keras.optimizers.Adam(cfg.learning_rate)
    self._train_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
    self._agent = ppo_clip_agent.PPOClipAgent(
        ts.time_step_spec(obs_spec), act_spec, self._optimizer, actor_net=self._actor,
        value_net=self._value, importance_ratio_clipping=cfg.importance_ratio_clipping,
        lambda_value=1.0, discount_factor=1.0,
        entropy_regularization=cfg.entropy_regularization, num_epochs=cfg.num_epochs,
        normalize_rewards=cfg.normalize_rewards, normalize_observations=False,
        train_step_counter=self._train_step)
    self._agent.initialize()
    self._init_weights(np.random.default_rng([self._seed, 1]))
    trainable = self._actor.trainable_variables + self._value.trainable_variables
    self._optimizer.build(trainable)  # slots exist up front, so a restore can fill them
    self._checkpoint = tf.train.Checkpoint(agent=self._agent, optimizer=self._optimizer,
                                           train_step=self._train_step)
    # Batch and time dimensions left open: a smaller last batch must not retrace.
    trajectory_spec = tf.nest.map_structure(
        lambda s: tf.TensorSpec([None, None] + list(s.shape), s.dtype),
        self._agent.collect_data_spec)
    self._train_fn = common.function(self._agent.train, input_signature=[trajectory_spec])
    self._rollout_fn = tf.function(self._rollout_graph, input_signature=[
        tf.TensorSpec([None, d], tf.float64), tf.TensorSpec([None, d], tf.int32),
        tf.TensorSpec([], tf.bool)])
    self._baseline: float | None = None

  @property
  def agent(self) -> ppo_clip_agent.PPOClipAgent:
    return self._agent

  @property
  def train_step(self) -> int:
    """tf-agents' train step counter (one per epoch of each update)."""
    return int(self._train_step.numpy())

  @property
  def baseline(self) -> float | None:
    return self._baseline

  def _init_weights(self, rng: np.random.Generator) -> None:
    # Glorot-uniform kernels drawn from the controller's seed, so that the seed
    # alone fixes the initial policy (TF's global seed is left alone). Biases
    # keep their constant initializers.
    for net in (self._actor, self._value):
      for v in net.variables:
        if len(v.shape) != 2:
          continue
        fan_in, fan_out = v.shape
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        if v is self._actor.head.kernel:
          limit *= _HEAD_INIT_SCALE
        v.assign(rng.uniform(-limit, limit, size=v.shape).astype(np.float32))

  # --------------------------------------------------------------------------- sampling
  def _encode(self, step: tf.Tensor, prev: tf.Tensor) -> tf.Tensor:
    """Observations [..., D+A+1] for decision `step` after action `prev` (both int32 [...]).

    An out-of-range index one-hots to zeros: step D is the terminal step and
    prev −1 means there is no previous action.
    """
    d, a = self._mask.shape
    return tf.concat([tf.one_hot(step, d), tf.one_hot(prev, a),
                      tf.ones(tf.concat([tf.shape(step), [1]], 0))], axis=-1)

  def _rollout_graph(self, uniforms: tf.Tensor, forced: tf.Tensor, follow: tf.Tensor):
    """Runs the actor over the D decisions of a batch, in one graph.

    Args:
      uniforms: [n, D] float64 draws in [0, 1) for inverse-CDF sampling.
      forced: [n, D] int32 actions to follow when `follow` is True.
      follow: scalar bool.

    Returns:
      actions [n, D] int32 and the masked logits of every step [n, D, A].
    """
    n = tf.shape(uniforms)[0]
    d = self.num_decisions
    arities = tf.constant(self._arities, tf.int32)
    state = self._actor.get_initial_state(n)
    prev = -tf.ones([n], tf.int32)
    actions = tf.TensorArray(tf.int32, size=d)
    all_logits = tf.TensorArray(tf.float32, size=d)
    for t in tf.range(d):
      step_type = tf.fill([n], tf.where(t == 0, ts.StepType.FIRST, ts.StepType.MID))
      dist, state = self._actor(self._encode(tf.fill([n], t), prev), step_type=step_type,
                                network_state=state)
      # The same float64 inverse CDF as `categorical.sample`; masked options have p = 0.
      cdf = tf.cumsum(tf.nn.softmax(tf.cast(dist.logits, tf.float64)), axis=-1)
      drawn = tf.reduce_sum(tf.cast(uniforms[:, t, None] >= cdf, tf.int32), axis=-1)
      action = tf.where(follow, forced[:, t], tf.minimum(drawn, arities[t] - 1))
      actions = actions.write(t, action)
      all_logits = all_logits.write(t, dist.logits)
      prev = action
    return tf.transpose(actions.stack()), tf.transpose(all_logits.stack(), [1, 0, 2])

  PROBABILITY_ROLLOUTS = 256
  PROBABILITY_SEED = 12345

  def decision_probabilities(self) -> list[list[float]]:
    """Marginals estimated from `PROBABILITY_ROLLOUTS` rollouts: the LSTM policy is autoregressive.
    They are drawn with a private Generator, so the controller's own RNG is not touched."""
    actions, _ = self._rollout(self.PROBABILITY_ROLLOUTS, rng=np.random.default_rng(self.PROBABILITY_SEED))
    return [[float(np.mean(actions[:, d] == i)) for i in range(a)] for d, a in enumerate(self.arities)]

  def _rollout(self, n: int, rng: Optional[np.random.Generator] = None,
               actions: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Samples `n` architectures with `rng`, or follows `actions` [n, D].

    Returns:
      actions [n, D] int64 and the masked logits of every step [n, D, A] float32.
    """
    d = self.num_decisions
    follow = actions is not None
    uniforms = np.zeros((n, d)) if follow else rng.random((n, d))
    forced = actions if follow else np.zeros((n, d))
    with _quiet_autograph():
      out_actions, logits = self._rollout_fn(tf.constant(uniforms, tf.float64),
                                             tf.constant(forced, tf.int32), tf.constant(follow))
    return out_actions.numpy().astype(np.int64), logits.numpy()

  def _sample(self, n: int) -> list[Sample]:
    actions, logits = self._rollout(n, rng=self._rng)
    return [Sample(tuple(int(i) for i in row), info=lg) for row, lg in zip(actions, logits)]

  def entropy(self) -> float:
    """A Monte Carlo estimate of the policy's entropy over whole architectures, in nats.

    By the chain rule it is E[Σ_t H(π(·|a_<t))], averaged over a fixed set of
    rollouts; it draws from a private Generator, never the controller's own.
    """
    _, logits = self._rollout(_ENTROPY_SAMPLES, rng=np.random.default_rng(_ENTROPY_SEED))
    log_probs = categorical.masked_log_softmax(logits, self._mask[None])
    return float(categorical.entropy(log_probs).sum(axis=1).mean())

  # --------------------------------------------------------------------------- learning
  def _trajectory(self, actions: np.ndarray, logits: np.ndarray,
                  rewards: np.ndarray) -> trajectory.Trajectory:
    """The batch as a [n, D+1] trajectory: D decisions, then a terminal step."""
    n, d = actions.shape
    steps = np.broadcast_to(np.arange(d + 1, dtype=np.int32), (n, d + 1))
    prev = np.concatenate([-np.ones((n, 1), np.int32), actions.astype(np.int32)], axis=1)
    acts = np.concatenate([actions, np.zeros((n, 1), np.int64)], axis=1).astype(np.int32)
    info_logits = np.concatenate([logits, np.zeros((n, 1, logits.shape[2]), np.float32)], axis=1)
    first, mid, last = int(ts.StepType.FIRST), int(ts.StepType.MID), int(ts.StepType.LAST)
    step_type = np.full((n, d + 1), mid, np.int32)
    step_type[:, 0], step_type[:, d] = first, last
    next_step_type = np.full((n, d + 1), mid, np.int32)
    next_step_type[:, d - 1], next_step_type[:, d] = last, first
    reward = np.zeros((n, d + 1), np.float32)
    reward[:, d - 1] = rewards
    discount = np.ones((n, d + 1), np.float32)
    discount[:, d - 1] = 0.0
    return trajectory.Trajectory(
        step_type=tf.constant(step_type), observation=self._encode(steps, prev),
        action=tf.constant(acts), policy_info={"dist_params": {"logits": tf.constant(info_logits)}},
        next_step_type=tf.constant(next_step_type), reward=tf.constant(reward),
        discount=tf.constant(discount))

  def _update(self, samples: list[Sample], rewards: np.ndarray) -> dict[str, float]:
    actions = np.array([s.indices for s in samples], np.int64)
    for i, s in enumerate(samples):
      if s.info is not None and np.shape(s.info) != self._mask.shape:
        raise ValueError(f"samples[{i}].info of shape {np.shape(s.info)} is invalid; allowed: "
                         f"None or the logits {self._mask.shape} that this controller's sample() gives")
    if all(s.info is not None for s in samples):
      logits = np.stack([np.asarray(s.info, np.float32) for s in samples])
    else:
      # Samples made outside `sample` (e.g. known architectures): the current
      # policy's logits stand in for the ones they would have been drawn from.
      _, logits = self._rollout(len(samples), actions=actions)
    baseline_used = 0.0
    if self.config.baseline_decay is not None:
      baseline_used, self._baseline = advance_baseline(self._baseline, rewards,
                                                       self.config.baseline_decay)
    fed = rewards - baseline_used
    with _quiet_autograph():
      loss_info = self._train_fn(self._trajectory(actions, logits, fed))
    extra = loss_info.extra
    return {"loss": float(loss_info.loss), "entropy": self.entropy(), "baseline": baseline_used,
            "policy_gradient_loss": float(extra.policy_gradient_loss),
            "value_loss": float(extra.value_estimation_loss),
            "train_step": float(self.train_step)}

  # --------------------------------------------------------------------------- checkpoints
  def _state(self) -> dict[str, Any]:
    return {"baseline": self._baseline}

  def _load_state(self, state: Mapping[str, Any]) -> None:
    self._baseline = state["baseline"]

  def _write_files(self, folder: str) -> None:
    self._checkpoint.write(os.path.join(folder, _TF_CHECKPOINT))

  def _read_files(self, folder: str) -> None:
    self._checkpoint.read(os.path.join(folder, _TF_CHECKPOINT)).assert_consumed()
