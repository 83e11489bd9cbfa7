"""The ground truth G: reading its records and scoring any signal against it.

G is a set of architectures trained the way a user trains the final network and scored on the
test split (`benchmarks/ground_truth.py` builds it; `results/ground_truth/` holds it). A network
is identified by `blocks_key`, its block strings joined by commas, wherever it appears: in G's
records, in a search's trials, in a one-shot run's scores.
"""

from __future__ import annotations

import math
import os
import statistics
from typing import Any, Mapping, Sequence

import search_space
from mnas_search.util import fileio, stats
from nas_common import FieldError
from search_space import Architecture

RECORDS = "records.jsonl"
PROXIES = "proxies.jsonl"


def blocks_key(arch: Architecture | Mapping[str, Any]) -> str:
  """The network's block strings joined by commas (an Architecture or its JSON dict)."""
  if isinstance(arch, Architecture):
    return ",".join(arch.block_strings)
  return ",".join(Architecture.from_dict(dict(arch)).block_strings)


def read_records(directory: str, name: str = RECORDS) -> list[dict[str, Any]]:
  """The records of G's `name` file (records.jsonl or proxies.jsonl); [] when it has none yet."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"ground_truth={directory!r} is not a directory; allowed: a folder "
                            f"with {RECORDS}, as benchmarks/ground_truth.py writes")
  path = os.path.join(directory, name)
  return fileio.read_jsonl(path) if os.path.isfile(path) else []


def truth(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Mean test accuracy per network (by `blocks`) over its finished seeds."""
  acc: dict[str, list[float]] = {}
  for r in records:
    if r.get("status", "ok") == "ok" and r.get("test_accuracy") is not None:
      acc.setdefault(r["blocks"], []).append(float(r["test_accuracy"]))
  return {k: statistics.fmean(v) for k, v in acc.items()}


def read_truth(directory: str) -> dict[str, float]:
  """`truth` of G's records.jsonl; FileNotFoundError naming the folder when it holds none."""
  t = truth(read_records(directory))
  if not t:
    raise FileNotFoundError(f"ground_truth={directory!r} holds no finished {RECORDS} record")
  return t


def score(signal: Mapping[str, float], truth_by_blocks: Mapping[str, float],
          level: float = 0.9) -> dict[str, Any]:
  """τ and ρ (with bootstrap intervals) of a signal against G over the networks both hold.

  Args:
    signal: a score per network (`blocks_key`), e.g. proxy accuracy or a supernet's accuracy.
    truth_by_blocks: G's test accuracy per network (`truth`).
    level: the intervals' coverage.

  Returns:
    `stats.rank_agreement`'s dict plus "matched" (networks in both) and "unmatched" (in the
    signal but not in G).
  """
  keys = sorted(set(signal) & set(truth_by_blocks))
  out = stats.rank_agreement([signal[k] for k in keys], [truth_by_blocks[k] for k in keys], level)
  out["matched"] = len(keys)
  out["unmatched"] = len(set(signal) - set(truth_by_blocks))
  return out


# ----------------------------------------------------------------------------- signals
# A signal is a score per network, {blocks_key: score}: a search's proxy accuracies, a proxy of
# G's proxies.jsonl, or any JSON-lines file of scores. Where a network appears more than once,
# its score is the mean.
SCORES_ALLOWED = ("a JSON-lines file whose every line has blocks (or arch) and accuracy (or "
                  "score)")


def _mean_by_key(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
  """The mean of the values of each key."""
  values: dict[str, list[float]] = {}
  for key, value in pairs:
    values.setdefault(key, []).append(float(value))
  return {k: statistics.fmean(v) for k, v in values.items()}


def search_signal(search_dir: str) -> dict[str, float]:
  """The proxy accuracy of each network a search trained (its status-ok trials).

  A multi-fidelity search's children are taken at the highest budget stored only: a child stopped
  at a low rung was scored by a shorter proxy.

  Args:
    search_dir: a search directory (multi-trial or one-shot: its trials.jsonl).

  Returns:
    {blocks_key: accuracy}, the mean over the trials of a network trained more than once.

  Raises:
    FileNotFoundError: the directory has no trials.jsonl.
    ValueError: a trial record is malformed.
  """
  from mnas_search.runs import records
  finals = records.read_trials(search_dir)
  top = max((records.budget_of(r) for r in finals), default=0)
  return _mean_by_key([(blocks_key(r["arch"]), r["accuracy"]) for r in finals
                       if r["status"] == "ok" and records.budget_of(r) == top])


def proxy_names(directory: str) -> list[str]:
  """The proxies that G's proxies.jsonl holds records of, sorted."""
  return sorted({r["proxy"] for r in read_records(directory, PROXIES) if "proxy" in r})


def proxy_signal(directory: str, proxy: str, seed: int = 0) -> dict[str, float]:
  """The accuracy of each network under one proxy of G's proxies.jsonl.

  Args:
    directory: G's folder.
    proxy: the proxy's name, as its records give it.
    seed: the seed whose runs are taken (every network of G has a seed-0 run).

  Returns:
    {blocks_key: accuracy} (the mean if the file holds a network's run twice).

  Raises:
    FieldError: (field "proxy") the file holds no record of `proxy`.
  """
  rows = [r for r in read_records(directory, PROXIES) if r.get("proxy") == proxy]
  if not rows:
    names = proxy_names(directory)
    raise FieldError("proxy", proxy, ", ".join(names) if names else
                     f"none: {os.path.join(directory, PROXIES)} holds no proxy record",
                     detail=f" (no record in {PROXIES})")
  return proxy_scores(rows, proxy, seed)


def proxy_scores(rows: Sequence[Mapping[str, Any]], proxy: str, seed: int = 0) -> dict[str, float]:
  """{blocks_key: accuracy} of `proxy`'s runs with `seed` among proxies.jsonl records `rows`.

  A failed child counts with the accuracy it was recorded with (0), as a search would score it:
  leaving it out would flatter a proxy that fails to train some networks.
  """
  return _mean_by_key([(r["blocks"], r["accuracy"]) for r in rows
                       if r.get("proxy") == proxy and r.get("seed") == seed
                       and r.get("accuracy") is not None])


def _score_line(path: str, number: int, line: Any) -> tuple[str, float] | None:
  """(blocks_key, score) of one record of a scores file; None when its score is null."""
  def bad(why: str) -> FieldError:
    return FieldError("scores", path, SCORES_ALLOWED, detail=f" (record {number} {why})")
  if not isinstance(line, dict):
    raise bad("is not a JSON object")
  if "blocks" in line:
    blocks = line["blocks"]
    if not isinstance(blocks, (str, list)) or not blocks:
      raise bad(f"has blocks={blocks!r}, not block strings")
    try:
      key = ",".join(b.to_string() for b in search_space.parse_blocks(blocks))
    except (ValueError, TypeError, AttributeError) as e:
      raise bad(f"has blocks that do not parse: {e}") from None
  elif "arch" in line:
    try:
      key = blocks_key(line["arch"])
    except (ValueError, TypeError, KeyError) as e:
      raise bad(f"has an arch that does not parse: {e}") from None
  else:
    raise bad("has neither blocks nor arch")
  name = "accuracy" if "accuracy" in line else "score"
  value = line.get(name)
  if value is None:
    if name not in line:
      raise bad("has neither accuracy nor score")
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise bad(f"has {name}={value!r}, not a finite number")
  return key, float(value)


def scores_signal(path: str) -> dict[str, float]:
  """The scores of a JSON-lines file: each line names a network and gives its score.

  A line names its network by `blocks` (block strings: a list, or one string joined by commas)
  or `arch` (an architecture JSON object), and gives its score as `accuracy` or `score`; a line
  whose score is null is left out (an unfinished run).

  Args:
    path: the file.

  Returns:
    {blocks_key: score}, the mean over the lines of a network given more than once.

  Raises:
    FieldError: (field "scores") the file is missing or a line is malformed (naming its record
      number, blank lines not counted).
  """
  if not os.path.isfile(path):
    raise FieldError("scores", path, SCORES_ALLOWED, detail=" (no such file)")
  try:
    lines = fileio.read_jsonl(path)
  except ValueError as e:
    raise FieldError("scores", path, SCORES_ALLOWED, detail=f" ({e})") from None
  pairs = [_score_line(path, i + 1, line) for i, line in enumerate(lines)]
  return _mean_by_key([p for p in pairs if p is not None])
