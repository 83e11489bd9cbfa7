"""Controllers: they propose index vectors over decisions and learn from rewards.

`make(name, arities, seed=0, **hparams)` builds one of `NAMES`:

- `ppo` (the default): an LSTM policy trained with PPO on tf-agents.
- `reinforce`: independent logits per decision and a moving-average baseline (TuNAS).
- `evolution`: regularized (aging) evolution.
- `random`: uniform random search.

Only `ppo` imports TensorFlow, and only when it is built, so the others stay light.
"""

import contextlib
import importlib
import io
import os
import sys
import warnings
from typing import Iterator, Sequence

from controller.base import Controller, Sample

DEFAULT = "ppo"
_CLASSES = {
    "ppo": ("controller.ppo", "PPOController"),
    "reinforce": ("controller.reinforce", "ReinforceController"),
    "evolution": ("controller.evolution", "EvolutionController"),
    "random": ("controller.random_controller", "RandomController"),
}
NAMES = tuple(_CLASSES)
LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"


def use_legacy_keras() -> None:
  """Chooses legacy Keras (tf_keras) as `tf.keras`, which tf-agents needs.

  TensorFlow reads the variable when `tf.keras` is first touched, so this must run before that;
  entry points call it first thing, and `controller_class("ppo")` calls it before importing
  tf-agents. Child models use Keras 3 (`import keras`), which the variable does not affect.
  """
  os.environ.setdefault(LEGACY_KERAS_ENV, "1")
  # gym (imported by tf-agents) warns at run time about numpy 2; it is not used here.
  warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"gym(\.|$)")


@contextlib.contextmanager
def quiet_tf_agents_import() -> Iterator[None]:
  """Hides the gym banner and the distutils deprecation warnings of importing tf-agents.

  gym prints its "unmaintained" banner straight to sys.stderr on import. Other
  stderr output of the import is passed through.
  """
  captured = io.StringIO()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)
      with contextlib.redirect_stderr(captured):
        yield
  finally:
    text = captured.getvalue()
    banner = _gym_banner()
    if banner:
      text = text.replace(banner + "\n", "")
    if text:
      sys.stderr.write(text)


def _gym_banner() -> str:
  gym = sys.modules.get("gym")  # never import it here: that would print the banner
  if gym is None:
    return ""
  try:
    from gym_notices import notices
    return notices.notices.get(gym.__version__, "")
  except Exception:  # noqa: BLE001  (no gym: nothing to hide)
    return ""


def controller_class(name: str) -> type:
  """The class of the controller called `name` (importing its module on demand)."""
  if name not in _CLASSES:
    raise ValueError(f"controller name={name!r} is unknown; allowed: {list(NAMES)}")
  module, cls = _CLASSES[name]
  if name == "ppo":
    use_legacy_keras()
  return getattr(importlib.import_module(module), cls)


def make(name: str, arities: Sequence[int], seed: int = 0, **hparams) -> Controller:
  """A new controller of kind `name` over decisions of the given arities.

  Raises:
    ValueError: for an unknown name (listing `NAMES`), an unknown hparam
      (naming it) or a bad value.
  """
  return controller_class(name)(arities, seed=seed, **hparams)


def check_hparams(name: str, **hparams) -> None:
  """Checks `hparams` as `make` would, without building the controller (its module is imported).

  Raises:
    ValueError: for an unknown name, an unknown hparam (naming it) or a bad value (a FieldError
      naming the hparam).
  """
  from controller.base import make_config
  make_config(controller_class(name).Config, name, hparams)


__all__ = ["Controller", "Sample", "NAMES", "DEFAULT", "make", "controller_class", "check_hparams",
           "quiet_tf_agents_import", "use_legacy_keras"]
