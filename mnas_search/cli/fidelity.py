"""`launch.py fidelity`: retrains K trials of a search longer; Kendall τ and Spearman ρ of the two
rankings. With --ground_truth=G: τ and ρ (with bootstrap intervals) of a signal against G instead,
nothing trained; the signal is a search's trials (--search_dir), a proxy of G's proxies.jsonl
(--proxy) or a JSON-lines file of scores (--scores)."""

from __future__ import annotations

import os
from typing import Any

from absl import flags

from mnas_search.cli import common

# The flags that --ground_truth takes; the signals, exactly one of which is given with it.
GROUND_TRUTH_FLAGS = ("ground_truth", "search_dir", "proxy", "scores", "json")
SIGNAL_FLAGS = ("search_dir", "proxy", "scores")
SIGNALS_ALLOWED = "exactly one of --search_dir=DIR, --proxy=NAME, --scores=FILE"
MIN_MATCHED = 3


def define_flags(fv: flags.FlagValues) -> None:
  common.define_search_dir(fv)
  common.define_out(fv)
  flags.DEFINE_integer("sample", None, "K, how many distinct architectures to retrain (the top, "
                       "middle and bottom by proxy reward).", lower_bound=2, flag_values=fv)
  flags.DEFINE_integer("fidelity_epochs", None, "Epochs of the longer training (default: 4x the "
                       "search's).", lower_bound=1, flag_values=fv)
  # The other proxy flags, given explicitly, override the search's task; --proxy_epochs is refused.
  common.define_proxy(fv)
  common.define_backend(fv)
  common.define_strategy(fv)
  common.define_deterministic(fv)
  common.define_progress(fv)
  common.define_json(fv)
  flags.DEFINE_string("ground_truth", None, "Score a signal against this ground-truth folder "
                      "(records.jsonl, as benchmarks/ground_truth.py writes) instead of retraining: "
                      "the signal is --search_dir, --proxy or --scores.", flag_values=fv)
  flags.DEFINE_string("proxy", None, "With --ground_truth: score this proxy of its proxies.jsonl "
                      "(the seed-0 accuracy of each network).", flag_values=fv)
  flags.DEFINE_string("scores", None, "With --ground_truth: score this JSON-lines file (each line: "
                      "blocks or arch, and accuracy or score).", flag_values=fv)


def run(fv: flags.FlagValues) -> None:
  """Retrains K trials of a search longer (or, with --ground_truth, scores a signal against G);
  prints Kendall τ and Spearman ρ of the two rankings."""
  if fv["ground_truth"].present:
    run_ground_truth(fv)
    return
  for name in ("proxy", "scores"):
    if fv[name].present:
      raise ValueError(f"--{name} is not taken by fidelity without --ground_truth; allowed with "
                       "--ground_truth=DIR")
  run_retraining(fv)


def run_retraining(fv: flags.FlagValues) -> None:
  """Retrains K trials of a search longer; prints Kendall τ and Spearman ρ of the two rankings."""
  from mnas_search.analysis import fidelity
  from mnas_search.execution.resumable import RunOptions
  search_dir = common.require(fv, "search_dir",
                              "--search_dir=DIR is required: the search whose proxy is checked")
  if fv.sample is None:
    raise ValueError("--sample=K is required; allowed: an integer >= 2")
  if fv["proxy_epochs"].present or (fv["proxy_steps"].present and fv.fidelity_epochs is not None):
    given = ("--proxy_epochs" if fv["proxy_epochs"].present
             else "--proxy_steps with --fidelity_epochs")
    raise ValueError(f"{given} is not taken by fidelity; allowed: --fidelity_epochs=N or "
                     "--proxy_steps=N (the length of the longer training)")
  _, search_task = fidelity.read_search(search_dir)
  overrides = common.proxy_values(fv, only_present=True)
  long_task = fidelity.longer_task(search_task, epochs=fv.fidelity_epochs).replace(**overrides)
  config = fidelity.FidelityConfig(sample=fv.sample, task=long_task,
                                   deterministic=fv.deterministic)
  with common.backend_from_flags(fv, long_task) as backend:
    s = fidelity.run_fidelity(search_dir, config, out_dir=fv.out,
                              options=RunOptions(backend, fv.strategy, fv.tpu, fv.progress))
  if fv.json:
    common.print_json({k: s[k] for k in ("selected", "n", "kendall_tau", "spearman_rho", "files")})
    return
  print(f"{'trial':>6} {'group':<7} {'proxy reward':>12} {'proxy acc':>9} {'long acc':>9}  status")
  for r in s["trials"]:
    print(f"{r['trial']:>6} {r['group']:<7} {r['proxy_reward']:>12.4f} {r['proxy_accuracy']:>9.4f} "
          f"{r['accuracy']:>9.4f}  {r['status']}")
  schedule = f"{long_task.steps} steps" if long_task.steps else f"{long_task.epochs} epochs"
  print(f"proxy ({search_task.epochs} epochs) vs longer training ({schedule}, "
        f"{long_task.train_images or 'all'} images) over {s['n']} trials: Kendall tau "
        f"{_signed(s['kendall_tau'])}, Spearman rho {_signed(s['spearman_rho'])}")
  print(f"trained {s['trained']} trial(s) in {s['wall_seconds']:.0f}s; files: "
        + ", ".join(s["files"].values()))


def _signed(v: float | None) -> str:
  return "n/a (a constant ranking)" if v is None else f"{v:+.4f}"


# ----------------------------------------------------------------------------- --ground_truth
def check_ground_truth_flags(fv: flags.FlagValues) -> str:
  """Refuses the retraining flags and anything but exactly one signal; the signal's flag."""
  for name in common.own_flags(fv):
    if fv[name].present and name not in GROUND_TRUTH_FLAGS:
      allowed = ", ".join(f"--{n}" for n in sorted(GROUND_TRUTH_FLAGS) if n != "ground_truth")
      raise ValueError(f"--{name} is not taken by fidelity --ground_truth; allowed with "
                       f"--ground_truth: {allowed}")
  given = [n for n in SIGNAL_FLAGS if fv[n].present]
  if not given:
    raise ValueError(f"--ground_truth needs the signal to score; allowed: {SIGNALS_ALLOWED}")
  if len(given) > 1:
    typed = " and ".join(f"--{n}={fv[n].value}" for n in given)
    raise ValueError(f"{typed} were given together with --ground_truth; allowed: {SIGNALS_ALLOWED}")
  return given[0]


def read_ground_truth(directory: str) -> tuple[dict[str, float], dict[str, str]]:
  """G's mean test accuracy and name per network; a FieldError naming --ground_truth if none."""
  from mnas_search.analysis import ground_truth as gt
  from nas_common import FieldError
  allowed = f"a folder with {gt.RECORDS}, as benchmarks/ground_truth.py writes"
  if not os.path.isdir(directory):
    raise FieldError("ground_truth", directory, allowed, detail=" (not a directory)")
  records = gt.read_records(directory)
  truth = gt.truth(records)
  if not truth:
    raise FieldError("ground_truth", directory, allowed,
                     detail=f" (no finished record in {gt.RECORDS})")
  return truth, {r["blocks"]: r.get("name", "?") for r in records}


def read_signal(fv: flags.FlagValues, flag: str, directory: str) -> dict[str, float]:
  """The signal that --search_dir, --proxy or --scores names, {blocks_key: score}."""
  from mnas_search.analysis import ground_truth as gt
  value = fv[flag].value or ""
  if flag == "search_dir":
    return gt.search_signal(value)
  if flag == "proxy":
    return gt.proxy_signal(directory, value)
  return gt.scores_signal(value)


def run_ground_truth(fv: flags.FlagValues) -> None:
  """Scores a signal against G: how many networks matched, τ and ρ with their intervals."""
  from mnas_search.analysis import ground_truth as gt
  flag = check_ground_truth_flags(fv)
  truth, names = read_ground_truth(fv.ground_truth or "")
  signal = read_signal(fv, flag, fv.ground_truth)
  s = gt.score(signal, truth)
  matched = (f"matched {s['matched']} of {len(signal)} networks; {s['unmatched']} "
             f"{'is' if s['unmatched'] == 1 else 'are'} not in the ground truth")
  if s["matched"] < MIN_MATCHED:
    raise ValueError(f"--{flag}={fv[flag].value}: {matched}; allowed: a signal with at least "
                     f"{MIN_MATCHED} networks of --ground_truth={fv.ground_truth}")
  out = {"signal": f"{flag}={fv[flag].value}", **{k: s[k] for k in (
      "matched", "unmatched", "n", "kendall_tau", "kendall_tau_interval", "spearman_rho",
      "spearman_rho_interval", "level")}}
  if fv.json:
    common.print_json(out)
    return
  print_table(signal, truth, names)
  print(matched)
  print(f"{out['signal']} vs ground truth ({s['n']} networks, {round(100 * s['level'])}% "
        f"bootstrap intervals): Kendall tau {_with_interval(s, 'kendall_tau')}, Spearman rho "
        f"{_with_interval(s, 'spearman_rho')}")


def _ranks(values: dict[str, float]) -> dict[str, int]:
  """1 for the highest value (ties in key order)."""
  return {k: i + 1 for i, k in enumerate(sorted(values, key=lambda k: (-values[k], k)))}


def print_table(signal: dict[str, float], truth: dict[str, float], names: dict[str, str]) -> None:
  """The matched networks, best in G first: name, signal, G's test accuracy and both ranks."""
  keys = set(signal) & set(truth)
  by_signal = _ranks({k: signal[k] for k in keys})
  by_truth = _ranks({k: truth[k] for k in keys})
  width = max([len("network")] + [len(names.get(k, "?")) for k in keys])
  print(f"{'network':<{width}} {'signal':>9} {'G test acc':>10} {'signal rank':>11} {'G rank':>6}")
  for k in sorted(keys, key=by_truth.get):
    print(f"{names.get(k, '?'):<{width}} {signal[k]:>9.4f} {truth[k]:>10.4f} {by_signal[k]:>11} "
          f"{by_truth[k]:>6}")


def _with_interval(s: dict[str, Any], key: str) -> str:
  interval = s[key + "_interval"]
  shown = _signed(s[key])
  if interval is None:
    return f"{shown} [interval n/a: fewer than 4 networks]" if s[key] is not None else shown
  return f"{shown} [{interval[0]:+.4f}, {interval[1]:+.4f}]"
