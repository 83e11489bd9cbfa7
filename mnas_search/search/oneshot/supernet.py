"""A weight-sharing supernet over a factorized MBConv space, in Keras 3 (TuNAS-style).

One network holds every decision of a `search_space.SearchSpace`. A path (one architecture) is
not a different graph but a set of mask and selector tensors (`encode_path`) fed to the same
traced functions, so sampling a new path never retraces.

How each decision is shared:

- filters and expansion: channel masking. Every slot owns the weights of its largest choice;
  choice k uses the first k channels (a mask multiplies each BN output, so the tail stays 0 and
  the next 1x1 conv sees exactly the k channels a stand-alone network would).
- kernel size: one shared depthwise kernel of the stage's largest size; a smaller kernel is its
  centre crop (the path's kernel mask zeroes the border). With 'same' padding this equals the
  stand-alone k x k depthwise conv exactly, at stride 1 and 2, for every input size: the padding
  of k+2 is that of k plus one row/column on each side.
- SE: on or off by a selector (the excite gate, or 1); SE reduce channels are masked too.
- skip: the identity skip is added times a selector (1 exactly when the stand-alone block has it).
- repeats: every stage has as many slots as its largest repeat count; a slot beyond the path's
  repeats passes its input through (a selector), so it is identity.

BatchNormalization is the builder's (momentum from `bn_momentum`, epsilon 1e-3), with one shared
moving-average momentum held in a variable so that recalibration (a cumulative average over a
few training batches, `SupernetRunner.recalibrate`) needs no retrace. Dropout and drop-connect
are left out: the path sampling regularizes the shared weights, and their rates depend on the
path (drop-connect grows with the block index) which would make the graph path-dependent.

`copy_to_model` writes a path's shared weights into the stand-alone Keras model that
`search_space.build_model` builds, layer for layer; in inference mode both give the same logits.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras
import numpy as np
from keras import ops

import search_space
from search_space import Architecture, SearchSpace, round_filters
from search_space.model import BN_EPSILON, KERAS_ACTIVATIONS, block_letter, conv_init, dense_init

# Path entries of one block slot.
SLOT_KEYS = ("active", "e1", "se", "skip", "kmask", "exp", "semask", "out")
MODES = ("train", "infer", "score")


@dataclasses.dataclass(frozen=True)
class SlotShape:
  """The capacity of one block slot (the largest choice of every decision it serves)."""

  stage: int
  index: int          # position within the stage, from 0
  stride: int
  cin: int            # input channels (largest choice of the previous stage, or the stem)
  cout: int           # output channels (largest filters choice of the stage)
  kernel: int         # largest kernel of the stage
  expansions: tuple[int, ...]
  se_ratios: tuple[float, ...]
  optional: bool      # may be identity (beyond the stage's smallest repeat count)

  @property
  def cexp(self) -> int:
    return self.cin * max(self.expansions)

  @property
  def has_expand(self) -> bool:
    return max(self.expansions) > 1

  @property
  def has_e1(self) -> bool:
    return 1 in self.expansions and self.has_expand

  @property
  def se_max(self) -> int:
    r = max(self.se_ratios)
    return max(1, int(self.cin * r)) if r > 0 else 0

  @property
  def key(self) -> str:
    return f"s{self.stage + 1}b{self.index + 1}"


def slot_shapes(space: SearchSpace, width: float) -> list[SlotShape]:
  """Every block slot of the supernet of `space` at width multiplier `width`."""
  slots = []
  cin = round_filters(space.stem_filters, width)
  for s, st in enumerate(space.stages):
    cout = max(round_filters(f, width) for f in st.filters)
    for j in range(max(st.repeats)):
      slots.append(SlotShape(stage=s, index=j, stride=st.stride if j == 0 else 1,
                             cin=cin if j == 0 else cout, cout=cout, kernel=max(st.kernel),
                             expansions=tuple(st.expansion), se_ratios=tuple(float(r) for r in st.se_ratio),
                             optional=j >= min(st.repeats)))
    cin = cout
  return slots


def _mask(n: int, size: int) -> np.ndarray:
  m = np.zeros(size, np.float32)
  m[:n] = 1.0
  return m


def _kernel_mask(k: int, size: int) -> np.ndarray:
  m = np.zeros((size, size), np.float32)
  c = (size - k) // 2
  m[c:c + k, c:c + k] = 1.0
  return m


def check_base_arch(space: SearchSpace, arch: Architecture) -> tuple[int, ...]:
  """The index vector of `arch` in `space`; refuses a scaled architecture or one outside the space."""
  if arch.width_coefficient != 1.0 or arch.depth_coefficient != 1.0:
    raise ValueError(f"architecture {arch.name!r} has width {arch.width_coefficient} and depth "
                     f"{arch.depth_coefficient}; allowed: a base architecture (both 1.0), the supernet "
                     "applies its own width")
  return space.encode(arch)


def encode_path(space: SearchSpace, width: float, arch: Architecture) -> dict[str, np.ndarray]:
  """The mask and selector tensors that make the supernet compute `arch`.

  Args:
    space: the supernet's space.
    width: the supernet's width multiplier.
    arch: a base architecture of `space` (width and depth coefficients 1; its activation and
      other globals are the supernet's, not the path's).

  Returns:
    {"<slot>/<key>": float32 array} for every slot and every key of `SLOT_KEYS`; the shapes
    depend only on the space and width, never on the path.
  """
  check_base_arch(space, arch)
  blocks = search_space.scale(arch, width=width).expand_blocks()
  by_slot: dict[tuple[int, int], Any] = {}
  seen: dict[int, int] = {}
  for b in blocks:
    j = seen.get(b.stage, 0)
    seen[b.stage] = j + 1
    by_slot[(b.stage, j)] = b
  path = {}
  for slot in slot_shapes(space, width):
    b = by_slot.get((slot.stage, slot.index))
    active = b is not None
    if b is None:  # identity: masks of the stage's last block keep the unused BN statistics sane
      b = by_slot[(slot.stage, seen[slot.stage] - 1)]
    p = {"active": np.float32(active), "e1": np.float32(b.expand_ratio == 1),
         "se": np.float32(b.se_ratio > 0), "skip": np.float32(active and b.has_skip),
         "kmask": _kernel_mask(b.kernel_size, slot.kernel),
         "exp": _mask(b.expanded_filters, slot.cexp),
         "semask": _mask(b.se_filters, max(1, slot.se_max)),
         "out": _mask(b.output_filters, slot.cout)}
    for k in SLOT_KEYS:
      path[f"{slot.key}/{k}"] = np.asarray(p[k], np.float32)
  return path


@dataclasses.dataclass(frozen=True)
class Sharing:
  """How the supernet shares weights between the choices of a slot (see `SuperBlock`).

  Attributes:
    private_weights: expansion 1 and blocks without their identity skip keep their own weights
      instead of sharing them.
    zero_init_residual: the projection BN of every slot whose block may keep its identity skip
      starts with gamma 0, so that with the skip the block starts as the identity (BigNAS's
      initialization); blocks without the skip get their own projection BN (gamma 1), which they
      need: through a gamma-0 BN they would start constant and BN would amplify their gradients.
  """

  private_weights: bool = False
  zero_init_residual: bool = False


class MaskedBN(keras.layers.Layer):
  """BatchNormalization over the largest channel count; the path's mask zeroes unused channels.

  Modes: "train" normalizes with batch statistics and moves the moving averages by the shared
  momentum variable; "infer" uses the moving averages; "score" normalizes every row with the
  statistics of the first `calib_rows` rows (a training batch in front of a validation batch)
  and moves nothing.
  """

  def __init__(self, channels: int, momentum_var, gamma_init: str = "ones", **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self._momentum = momentum_var
    self.gamma = self.add_weight(shape=(channels,), initializer=gamma_init, name="gamma")
    self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
    self.moving_mean = self.add_weight(shape=(channels,), initializer="zeros", name="moving_mean",
                                       trainable=False)
    self.moving_variance = self.add_weight(shape=(channels,), initializer="ones",
                                           name="moving_variance", trainable=False)

  def apply(self, x, mask, mode: str, calib_rows: int = 0):
    if mode == "infer":
      mean, var = self.moving_mean, self.moving_variance
    else:
      stats_of = x[:calib_rows] if mode == "score" else x
      mean, var = ops.moments(stats_of, axes=[0, 1, 2])
      if mode == "train":
        m = ops.cast(self._momentum, x.dtype)
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))
    inv = ops.rsqrt(var + BN_EPSILON) * self.gamma
    y = x * inv + (self.beta - mean * inv)
    return y if mask is None else y * mask


class SuperBlock(keras.layers.Layer):
  """One MBConv slot holding the weights of its largest choices.

  With `sharing.private_weights`, choices whose features differ in kind keep their own weights
  instead of sharing them: expansion 1 (whose depthwise conv reads the block's raw input, not
  expanded features) has its own depthwise kernel, SE, projection and BNs, as a separate op would;
  and a block without its identity skip has its own projection BN. With
  `sharing.zero_init_residual`, see `Sharing`. With neither, the weights and their order are as
  before, so older checkpoints still load.
  """

  def __init__(self, slot: SlotShape, activation: str, momentum_var, sharing: Sharing = Sharing(),
               **kwargs):
    super().__init__(**kwargs)
    self.slot = slot
    self.private_e1 = sharing.private_weights and slot.has_e1
    self.private_skip = (sharing.private_weights or sharing.zero_init_residual) and slot.stride == 1
    self.act = keras.activations.get(KERAS_ACTIVATIONS[activation])
    s = slot
    if s.has_expand:
      self.expand_kernel = self.add_weight(shape=(1, 1, s.cin, s.cexp), initializer=conv_init(),
                                           name="expand_kernel")
      self.expand_bn = MaskedBN(s.cexp, momentum_var, name="expand_bn")
    # Only a stride-1 slot can hold a block with its skip; its shared projection BN then starts at 0.
    # Expansion 1's private body serves its blocks with and without the skip alike: gamma 1.
    self._add_body(momentum_var, "", "zeros" if sharing.zero_init_residual and slot.stride == 1 else "ones")
    if self.private_e1:
      self._add_body(momentum_var, "_e1")
    if self.private_skip:
      self.project_bn_noskip = MaskedBN(s.cout, momentum_var, name="project_bn_noskip")

  def _add_body(self, momentum_var, suffix: str, project_gamma: str = "ones") -> None:
    """The weights after the expansion (depthwise, SE, projection), as attributes ending in `suffix`;
    the projection BN's gamma starts at `project_gamma`."""
    s = self.slot
    add = lambda name, shape, init: setattr(self, name + suffix, self.add_weight(  # noqa: E731
        shape=shape, initializer=init, name=name + suffix))
    add("dw_kernel", (s.kernel, s.kernel, s.cexp, 1), conv_init())
    setattr(self, "dw_bn" + suffix, MaskedBN(s.cexp, momentum_var, name="dw_bn" + suffix))
    if s.se_max:
      add("se_reduce_kernel", (1, 1, s.cexp, s.se_max), conv_init())
      add("se_reduce_bias", (s.se_max,), "zeros")
      add("se_expand_kernel", (1, 1, s.se_max, s.cexp), conv_init())
      add("se_expand_bias", (s.cexp,), "zeros")
    add("project_kernel", (1, 1, s.cexp, s.cout), conv_init())
    setattr(self, "project_bn" + suffix, MaskedBN(s.cout, momentum_var, project_gamma,
                                                  name="project_bn" + suffix))

  def body(self, suffix: str) -> dict[str, Any]:
    """The weights `_add_body` made with `suffix` ("" shared, "_e1" expansion 1's own)."""
    names = ["dw_kernel", "dw_bn", "project_kernel", "project_bn"]
    if self.slot.se_max:
      names += ["se_reduce_kernel", "se_reduce_bias", "se_expand_kernel", "se_expand_bias"]
    return {n: getattr(self, n + suffix) for n in names}

  def _apply_body(self, h, w: Mapping[str, Any], p: Mapping[str, Any], mode: str, calib_rows: int,
                  noskip_bn=None):
    kernel = w["dw_kernel"] * p["kmask"][:, :, None, None]
    h = ops.depthwise_conv(h, kernel, strides=self.slot.stride, padding="same")
    h = self.act(w["dw_bn"].apply(h, p["exp"], mode, calib_rows))
    if self.slot.se_max:
      se = ops.mean(h, axis=[1, 2], keepdims=True)
      se = self.act(ops.conv(se, w["se_reduce_kernel"], padding="same") + w["se_reduce_bias"])
      se = se * p["semask"]
      se = ops.sigmoid(ops.conv(se, w["se_expand_kernel"], padding="same") + w["se_expand_bias"])
      h = h * (p["se"] * se + (1.0 - p["se"]))
    h = ops.conv(h, w["project_kernel"], padding="same")
    out = w["project_bn"].apply(h, p["out"], mode, calib_rows)
    if noskip_bn is None:
      return out
    # The skip selector is 1 exactly when the block has its identity skip. Both BNs see the batch,
    # so that one traced graph serves every path; recalibration resets both before scoring.
    return p["skip"] * out + (1.0 - p["skip"]) * noskip_bn.apply(h, p["out"], mode, calib_rows)

  def apply(self, x, p: Mapping[str, Any], mode: str, calib_rows: int = 0):
    s = self.slot
    inputs = x
    noskip_bn = self.project_bn_noskip if self.private_skip else None
    if s.has_expand:
      h = self.act(self.expand_bn.apply(ops.conv(x, self.expand_kernel, padding="same"), p["exp"],
                                        mode, calib_rows))
    else:
      h = x
    if s.has_e1:  # expansion 1: the depthwise conv reads the block input itself
      padded = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, s.cexp - s.cin]])
      if self.private_e1:
        h = (p["e1"] * self._apply_body(padded, self.body("_e1"), p, mode, calib_rows)
             + (1.0 - p["e1"]) * self._apply_body(h, self.body(""), p, mode, calib_rows, noskip_bn))
      else:
        h = self._apply_body(p["e1"] * padded + (1.0 - p["e1"]) * h, self.body(""), p, mode,
                             calib_rows, noskip_bn)
    else:
      h = self._apply_body(h, self.body(""), p, mode, calib_rows, noskip_bn)
    if s.stride == 1:  # only then can a stand-alone block have its identity skip
      if s.cin < s.cout:
        skip = ops.pad(inputs, [[0, 0], [0, 0], [0, 0], [0, s.cout - s.cin]])
      else:
        skip = inputs[..., :s.cout]  # the tail past the path's channels is 0 anyway
      h = h + p["skip"] * skip
    if s.optional:
      h = p["active"] * h + (1.0 - p["active"]) * inputs
    return h


class Supernet(keras.layers.Layer):
  """The whole supernet: stem, every block slot, head and classifier."""

  def __init__(self, space: SearchSpace, width: float, input_shape: Sequence[int], num_classes: int,
               bn_momentum: float = 0.99, sharing: Sharing = Sharing(), **kwargs):
    super().__init__(**kwargs)
    self.sharing = sharing
    self.space = space
    self.width = float(width)
    self.image_shape = tuple(int(v) for v in input_shape)
    self.num_classes = int(num_classes)
    self.train_momentum = float(bn_momentum)
    self.bn_momentum = self.add_weight(shape=(), initializer=keras.initializers.Constant(bn_momentum),
                                       name="bn_momentum", trainable=False)
    self.act = keras.activations.get(KERAS_ACTIVATIONS[space.activation])
    self.slots = slot_shapes(space, width)
    stem = round_filters(space.stem_filters, width)
    self.head_channels = round_filters(space.head_filters, width)
    self.stem_kernel = self.add_weight(shape=(3, 3, self.image_shape[-1], stem), initializer=conv_init(),
                                       name="stem_kernel")
    self.stem_bn = MaskedBN(stem, self.bn_momentum, name="stem_bn")
    self.blocks = [SuperBlock(s, space.activation, self.bn_momentum, sharing, name=s.key)
                   for s in self.slots]
    self.head_kernel = self.add_weight(shape=(1, 1, self.slots[-1].cout, self.head_channels),
                                       initializer=conv_init(), name="head_kernel")
    self.head_bn = MaskedBN(self.head_channels, self.bn_momentum, name="head_bn")
    self.dense_kernel = self.add_weight(shape=(self.head_channels, num_classes), initializer=dense_init(),
                                        name="dense_kernel")
    self.dense_bias = self.add_weight(shape=(num_classes,), initializer="zeros", name="dense_bias")

  def apply(self, images, path: Mapping[str, Any], mode: str, calib_rows: int = 0):
    """Logits of `images` along `path` (a dict from `encode_path`, as tensors)."""
    if mode not in MODES:
      raise ValueError(f"mode={mode!r} is invalid; allowed: {MODES}")
    x = ops.conv(images, self.stem_kernel, strides=2, padding="same")
    x = self.act(self.stem_bn.apply(x, None, mode, calib_rows))
    for block in self.blocks:
      key = block.slot.key
      x = block.apply(x, {k: path[f"{key}/{k}"] for k in SLOT_KEYS}, mode, calib_rows)
    x = ops.conv(x, self.head_kernel, padding="same")
    x = self.act(self.head_bn.apply(x, None, mode, calib_rows))
    x = ops.mean(x, axis=[1, 2])
    return ops.matmul(x, self.dense_kernel) + self.dense_bias

  def bn_layers(self) -> list:
    out = [self.stem_bn, self.head_bn]
    for b in self.blocks:
      out += [b.dw_bn, b.project_bn] + ([b.expand_bn] if b.slot.has_expand else [])
      out += [b.dw_bn_e1, b.project_bn_e1] if b.private_e1 else []
      out += [b.project_bn_noskip] if b.private_skip else []
    return out


def make_supernet(space: SearchSpace, width: float, input_shape: Sequence[int], num_classes: int,
                  bn_momentum: float = 0.99, seed: int | None = None, sharing: Sharing = Sharing()) -> Any:
  """Builds the supernet of `space` at width multiplier `width`.

  Args:
    space: the search space.
    width: width multiplier applied to every filter count (as `search_space.scale` does).
    input_shape: (height, width, channels) of the images.
    num_classes: classifier outputs.
    bn_momentum: BatchNormalization moving-average momentum during training.
    seed: seeds the initializers (through Keras's global seed) when given.
    sharing: which choices keep their own weights, and how blocks start (`Sharing`).

  Returns:
    The `Supernet` Keras layer (weights created).
  """
  if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
    raise ValueError(f"width={width!r} is invalid; allowed: a number > 0")
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes={num_classes!r} is invalid; allowed: an integer >= 1")
  if seed is not None:
    from mnas_search.training.tf_state import seed_child
    seed_child(seed)
  return Supernet(space, width, input_shape, num_classes, bn_momentum, sharing, name="supernet")


def _bn_weights(bn, n: int) -> list[np.ndarray]:
  return [np.asarray(v)[:n] for v in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)]


def copy_to_model(net: Any, model: Any, arch: Architecture) -> None:
  """Writes the supernet's weights for `arch` into `model`, its stand-alone network.

  Args:
    net: the supernet.
    model: `search_space.build_model(scale(arch, width=net.width), net.image_shape,
      net.num_classes)` (layer names as the builder gives them).
    arch: the base architecture (as for `encode_path`).
  """
  check_base_arch(net.space, arch)
  child = search_space.scale(arch, width=net.width)
  get = model.get_layer
  a = lambda v: np.asarray(v)  # noqa: E731
  get("stem_conv").set_weights([a(net.stem_kernel)])
  get("stem_bn").set_weights(_bn_weights(net.stem_bn, child.stem_channels))
  seen: dict[int, int] = {}
  blocks = {(b.slot.stage, b.slot.index): b for b in net.blocks}
  last_out = None
  for cb in child.expand_blocks():
    j = seen.get(cb.stage, 0)
    seen[cb.stage] = j + 1
    sb = blocks[(cb.stage, j)]
    prefix = f"block{cb.stage + 1}{block_letter(j)}_"
    cin, cexp, cout = cb.input_filters, cb.expanded_filters, cb.output_filters
    if cb.expand_ratio != 1:
      get(prefix + "expand_conv").set_weights([a(sb.expand_kernel)[:, :, :cin, :cexp]])
      get(prefix + "expand_bn").set_weights(_bn_weights(sb.expand_bn, cexp))
    c = (sb.slot.kernel - cb.kernel_size) // 2
    k = cb.kernel_size
    e1 = sb.private_e1 and cb.expand_ratio == 1
    w = sb.body("_e1" if e1 else "")
    get(prefix + "dwconv").set_weights([a(w["dw_kernel"])[c:c + k, c:c + k, :cexp, :]])
    get(prefix + "bn").set_weights(_bn_weights(w["dw_bn"], cexp))
    if cb.se_ratio > 0:
      n = cb.se_filters
      get(prefix + "se_reduce").set_weights([a(w["se_reduce_kernel"])[:, :, :cexp, :n],
                                             a(w["se_reduce_bias"])[:n]])
      get(prefix + "se_expand").set_weights([a(w["se_expand_kernel"])[:, :, :n, :cexp],
                                             a(w["se_expand_bias"])[:cexp]])
    get(prefix + "project_conv").set_weights([a(w["project_kernel"])[:, :, :cexp, :cout]])
    noskip = sb.private_skip and not e1 and not cb.has_skip
    project_bn = sb.project_bn_noskip if noskip else w["project_bn"]
    get(prefix + "project_bn").set_weights(_bn_weights(project_bn, cout))
    last_out = cout
  get("top_conv").set_weights([a(net.head_kernel)[:, :, :last_out, :]])
  get("top_bn").set_weights(_bn_weights(net.head_bn, child.head_channels))
  get("predictions").set_weights([a(net.dense_kernel), a(net.dense_bias)])


def build_standalone(net: Any, arch: Architecture) -> Any:
  """The stand-alone Keras model of `arch` at the supernet's width, with the supernet's weights."""
  child = search_space.scale(arch.replace(activation=net.space.activation), width=net.width)
  model = search_space.build_model(child, net.image_shape, net.num_classes)
  copy_to_model(net, model, arch)
  return model
