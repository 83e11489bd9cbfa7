"""Block strings and architectures: the one description every other part reads.

The grammar is the TF EfficientNet reference's: underscore-separated fields,
`rN` repeats, `kN` kernel, `sNN` stride, `eN` expansion, `iN`/`oN` input and
output filters, `seX` the squeeze-excite ratio (omitted when 0) and `noskip`.
An `Architecture` is a tuple of base (unscaled) blocks plus a handful of global
parameters; width and depth coefficients are applied when the network is
expanded into concrete blocks (`expand_blocks`), exactly as the reference does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Sequence

from nas_common import check_int

ACTIVATIONS = ("swish", "relu", "relu6", "hard_swish")
DEPTH_DIVISOR = 8

_FIELD_RE = re.compile(r"^(r|k|s|e|i|o|se)(\d+(?:\.\d+)?)$")


@dataclasses.dataclass(frozen=True)
class BlockArgs:
  """One MBConv stage in the reference grammar (before any scaling).

  Attributes:
    repeats: how many times the block is stacked (the first one carries the stride).
    kernel_size: depthwise kernel size (odd).
    stride: 1 or 2, the same along both axes.
    expand_ratio: expansion of the 1x1 expand conv; 1 skips that conv.
    input_filters: filters entering the stage.
    output_filters: filters leaving every block of the stage.
    se_ratio: squeeze-excite ratio in [0, 1]; 0 disables SE.
    id_skip: whether the identity skip is allowed (`noskip` clears it).
  """

  repeats: int
  kernel_size: int
  stride: int
  expand_ratio: int
  input_filters: int
  output_filters: int
  se_ratio: float = 0.0
  id_skip: bool = True

  def __post_init__(self):
    def bad(field, value, allowed):
      raise ValueError(f"block {self.to_string()!r}: {field}={value!r} is invalid; "
                       f"allowed: {allowed}")
    for field, value in (("repeats", self.repeats), ("kernel_size", self.kernel_size),
                         ("expand_ratio", self.expand_ratio),
                         ("input_filters", self.input_filters),
                         ("output_filters", self.output_filters)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        bad(field, value, "an integer >= 1")
    if self.kernel_size % 2 == 0:
      bad("kernel_size", self.kernel_size, "an odd integer (3, 5, 7, ...)")
    if self.stride not in (1, 2):
      bad("stride", self.stride, "1 or 2 (s11 or s22)")
    if not 0.0 <= float(self.se_ratio) <= 1.0:
      bad("se_ratio", self.se_ratio, "a number in [0, 1]")

  @property
  def has_se(self) -> bool:
    return self.se_ratio > 0

  def to_string(self) -> str:
    """Formats the block in the reference grammar, e.g. `r1_k3_s11_e1_i32_o16_se0.25`."""
    parts = [f"r{self.repeats}", f"k{self.kernel_size}", f"s{self.stride}{self.stride}",
             f"e{self.expand_ratio}", f"i{self.input_filters}", f"o{self.output_filters}"]
    if self.se_ratio > 0:
      parts.append(f"se{self.se_ratio:g}")
    if not self.id_skip:
      parts.append("noskip")
    return "_".join(parts)

  def __str__(self) -> str:
    return self.to_string()


def parse_block(text: str) -> BlockArgs:
  """Parses one reference block string.

  Args:
    text: e.g. `r2_k3_s22_e6_i16_o24_se0.25` or `r1_k3_s11_e1_i32_o16_noskip`.

  Returns:
    The `BlockArgs` it describes.

  Raises:
    ValueError: naming the offending text when a field is unknown, repeated,
      missing or out of range.
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"block string {text!r} is empty; expected e.g. 'r1_k3_s11_e1_i32_o16_se0.25'")
  fields: dict[str, str] = {}
  id_skip = True
  for part in text.strip().split("_"):
    if part == "noskip":
      id_skip = False
      continue
    m = _FIELD_RE.match(part)
    if not m:
      raise ValueError(
          f"block string {text!r}: field {part!r} is not understood; allowed fields are "
          "rN (repeats), kN (kernel), sNN (stride 11 or 22), eN (expansion), iN, oN (filters), "
          "seX (SE ratio) and noskip")
    key, value = m.groups()
    if key in fields:
      raise ValueError(f"block string {text!r}: field {key!r} is given twice")
    fields[key] = value
  missing = [k for k in ("r", "k", "s", "e", "i", "o") if k not in fields]
  if missing:
    raise ValueError(f"block string {text!r}: missing field(s) {missing}; "
                     "required: r, k, s, e, i, o")
  stride = fields["s"]
  if stride not in ("11", "22"):
    raise ValueError(f"block string {text!r}: stride 's{stride}' is invalid; allowed: s11 or s22")
  ints = {}
  for key in ("r", "k", "e", "i", "o"):
    if "." in fields[key]:
      raise ValueError(f"block string {text!r}: {key}{fields[key]} must be an integer")
    ints[key] = int(fields[key])
  try:
    return BlockArgs(repeats=ints["r"], kernel_size=ints["k"], stride=int(stride[0]),
                     expand_ratio=ints["e"], input_filters=ints["i"], output_filters=ints["o"],
                     se_ratio=float(fields.get("se", 0.0)), id_skip=id_skip)
  except ValueError as e:
    raise ValueError(f"block string {text!r}: {e}") from None


def round_filters(filters: float, width_coefficient: float,
                  divisor: int = DEPTH_DIVISOR) -> int:
  """Scales filters by the width coefficient, rounded as the TF reference does.

  `max(8, int(f*w + 4) // 8 * 8)`, plus 8 when that falls below 0.9*f*w.
  """
  scaled = filters * width_coefficient
  new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  if new < 0.9 * scaled:
    new += divisor
  return int(new)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
  """Scales repeats by the depth coefficient: `ceil(d*r)`."""
  return int(math.ceil(depth_coefficient * repeats))


@dataclasses.dataclass(frozen=True)
class ConcreteBlock:
  """One built MBConv block after scaling and repeat expansion."""

  index: int            # position among all blocks, from 0
  stage: int            # stage it belongs to, from 0
  kernel_size: int
  stride: int
  expand_ratio: int
  input_filters: int
  output_filters: int
  se_ratio: float
  id_skip: bool
  drop_rate: float      # drop-connect rate, rising linearly over the blocks

  @property
  def expanded_filters(self) -> int:
    return self.input_filters * self.expand_ratio

  @property
  def se_filters(self) -> int:
    return max(1, int(self.input_filters * self.se_ratio)) if self.se_ratio > 0 else 0

  @property
  def has_skip(self) -> bool:
    return self.id_skip and self.stride == 1 and self.input_filters == self.output_filters


_ARCH_KEYS = ("name", "blocks", "width_coefficient", "depth_coefficient", "resolution",
              "dropout_rate", "drop_connect_rate", "activation", "stem_filters", "head_filters")


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A whole network: base blocks plus the global parameters.

  Attributes:
    blocks: base (unscaled) stages, in order.
    name: a label for reports and file names.
    width_coefficient: multiplies every filter count (rounded with `round_filters`).
    depth_coefficient: multiplies every stage's repeats (rounded up).
    resolution: the native input resolution of the network.
    dropout_rate: dropout before the classifier.
    drop_connect_rate: the last block's drop-connect (stochastic depth) rate.
    activation: one of `ACTIVATIONS`.
    stem_filters: base filters of the 3x3 stride-2 stem conv.
    head_filters: base filters of the 1x1 head conv.
  """

  blocks: tuple[BlockArgs, ...]
  name: str = "custom"
  width_coefficient: float = 1.0
  depth_coefficient: float = 1.0
  resolution: int = 224
  dropout_rate: float = 0.2
  drop_connect_rate: float = 0.2
  activation: str = "swish"
  stem_filters: int = 32
  head_filters: int = 1280

  def __post_init__(self):
    blocks = tuple(parse_block(b) if isinstance(b, str) else b for b in self.blocks)
    object.__setattr__(self, "blocks", blocks)
    if not blocks:
      raise ValueError("architecture has no blocks; give at least one block string")
    for b in blocks:
      if not isinstance(b, BlockArgs):
        raise ValueError(f"blocks must be block strings or BlockArgs, got {b!r}")
    # Each stage must take what the one before it gives (the stem for the first); otherwise the
    # builder would silently use other channels than the counters assume.
    expected = self.stem_filters if isinstance(self.stem_filters, int) else None
    for i, b in enumerate(blocks):
      if expected is not None and b.input_filters != expected:
        source = "the stem's stem_filters" if i == 0 else f"block {i}'s output (o{expected})"
        raise ValueError(f"block {i + 1} {b.to_string()!r}: input filters i{b.input_filters} do not "
                         f"match {source} = {expected}; allowed: i{expected}")
      expected = b.output_filters
    for field in ("width_coefficient", "depth_coefficient"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or math.isinf(v):
        raise ValueError(f"{field}={v!r} is invalid; allowed: a finite number > 0")
    for field in ("dropout_rate", "drop_connect_rate"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
        raise ValueError(f"{field}={v!r} is invalid; allowed: a number in [0, 1)")
    for field in ("resolution", "stem_filters", "head_filters"):
      v = getattr(self, field)
      check_int(field, v, 1)
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"activation={self.activation!r} is invalid; allowed: {list(ACTIVATIONS)}")

  @property
  def block_strings(self) -> list[str]:
    return [b.to_string() for b in self.blocks]

  @property
  def stem_channels(self) -> int:
    return round_filters(self.stem_filters, self.width_coefficient)

  @property
  def head_channels(self) -> int:
    return round_filters(self.head_filters, self.width_coefficient)

  def expand_blocks(self) -> list[ConcreteBlock]:
    """The concrete blocks the builder and the cost counters walk over.

    Width and depth scaling, repeat expansion (later repeats have stride 1 and
    input = output filters) and the linearly rising drop-connect rate are all
    decided here, once.
    """
    scaled = []
    for stage, b in enumerate(self.blocks):
      cin = round_filters(b.input_filters, self.width_coefficient)
      cout = round_filters(b.output_filters, self.width_coefficient)
      for j in range(round_repeats(b.repeats, self.depth_coefficient)):
        scaled.append((stage, b, cin if j == 0 else cout, cout, b.stride if j == 0 else 1))
    total = len(scaled)
    return [ConcreteBlock(index=i, stage=stage, kernel_size=b.kernel_size, stride=stride,
                          expand_ratio=b.expand_ratio, input_filters=cin, output_filters=cout,
                          se_ratio=b.se_ratio, id_skip=b.id_skip,
                          drop_rate=self.drop_connect_rate * i / total)
            for i, (stage, b, cin, cout, stride) in enumerate(scaled)]

  def identity(self) -> str:
    """What makes two networks the same: the JSON form without the name.

    A renamed repeat of a network is the same network (a cached trial, a
    duplicate in an export).
    """
    d = self.to_dict()
    del d["name"]
    return json.dumps(d, sort_keys=True)

  def network_identity(self) -> str:
    """What the builder builds, as a string: equal for two architectures that build the same
    network, whatever their names, base filters or coefficients.

    Two filter choices can round to the same channels (24 and 32 are both 8 at width 0.25), and
    a `noskip` where no skip is possible (a stride-2 block) changes nothing. The input
    resolution is not part of it: the caller gives the network its input.
    """
    blocks = [(b.kernel_size, b.stride, b.expand_ratio, b.input_filters, b.output_filters,
               b.se_filters, b.has_skip, b.drop_rate if b.has_skip else 0.0)
              for b in self.expand_blocks()]
    return json.dumps({"stem": self.stem_channels, "head": self.head_channels,
                       "activation": self.activation, "dropout_rate": self.dropout_rate,
                       "blocks": blocks})

  def replace(self, **changes: Any) -> "Architecture":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return {"name": self.name, "blocks": self.block_strings,
            "width_coefficient": self.width_coefficient,
            "depth_coefficient": self.depth_coefficient, "resolution": self.resolution,
            "dropout_rate": self.dropout_rate, "drop_connect_rate": self.drop_connect_rate,
            "activation": self.activation, "stem_filters": self.stem_filters,
            "head_filters": self.head_filters}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Architecture":
    """Builds an architecture from its JSON form; unknown keys are refused."""
    if not isinstance(d, dict):
      raise ValueError(f"architecture JSON must be an object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(_ARCH_KEYS))
    if unknown:
      raise ValueError(f"architecture JSON has unknown key(s) {unknown}; allowed: {list(_ARCH_KEYS)}")
    if "blocks" not in d:
      raise ValueError("architecture JSON has no 'blocks' list")
    blocks = d["blocks"]
    if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, str) for b in blocks):
      raise ValueError(f"'blocks' must be a list of block strings, got {blocks!r}")
    kwargs = {k: d[k] for k in _ARCH_KEYS if k in d and k != "blocks"}
    return cls(blocks=tuple(parse_block(b) for b in blocks), **kwargs)

  def to_json(self, indent: int | None = 2) -> str:
    return json.dumps(self.to_dict(), indent=indent)

  @classmethod
  def from_json(cls, text: str) -> "Architecture":
    try:
      d = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"architecture JSON is not valid JSON: {e}") from None
    return cls.from_dict(d)

  @classmethod
  def load(cls, path: str) -> "Architecture":
    if not os.path.isfile(path):
      raise FileNotFoundError(f"architecture file {path!r} does not exist")
    with open(path) as f:
      return cls.from_json(f.read())


def parse_blocks(texts: Sequence[str] | str) -> tuple[BlockArgs, ...]:
  """Parses a list of block strings (or one comma-separated string)."""
  if isinstance(texts, str):
    texts = [t for t in texts.split(",") if t.strip()]
  return tuple(parse_block(t) for t in texts)
