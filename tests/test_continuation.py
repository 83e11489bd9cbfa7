"""A child trained to budget b, stopped and continued to 3b ends where training to 3b in one go does.

What must carry over: the weights, batch-norm statistics and dropout seed state, the optimizer's
slots and step count (so the learning-rate schedule's position), and the data order.
"""

import os

import numpy as np
import pytest

from mnas_search.training import continuation, evaluation
from mnas_search.training.continuation import Span
from mnas_search.training.proxy import ProxyTask
from search_space import Architecture

# Dropout and drop-connect on, so that their seed generators' state must carry over too.
ARCH = Architecture(blocks=("r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e3_i16_o24"), name="tiny",
                    head_filters=128, dropout_rate=0.2, drop_connect_rate=0.2)
TASK = ProxyTask(dataset="synthetic:size=16,channels=1,classes=4,train=600,test=50", resolution=16,
                 train_images=320, val_images=128, epochs=3, batch_size=64, proxy_width=0.25,
                 weight_decay=1e-4, clip_norm=1.0)


def _state(path):
  with np.load(path) as d:
    return [d[f"arr_{i}"] for i in range(len(d.files))]


def _run(span, seed=3):
  return evaluation.evaluate(ARCH, TASK, seed=seed, deterministic=True, span=span)


def test_continue_from_b_to_3b_equals_uninterrupted_3b(tmp_path, restore_determinism, monkeypatch):
  b1, b3, whole = (str(tmp_path / n) for n in ("b1.npz", "b3.npz", "whole.npz"))
  first = _run(Span(0, 1, 3, save_to=b1))
  assert first.status == "ok" and first.epochs_completed == 1 and first.steps == 5
  continued = _run(Span(1, 3, 3, resume_from=b1, save_to=b3))
  assert continued.status == "ok" and continued.steps == 10 and continued.epochs_completed == 3
  one_go = _run(Span(0, 3, 3, save_to=whole))
  a, b = _state(b3), _state(whole)
  assert len(a) == len(b) > 50
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert continued.accuracy == pytest.approx(one_go.accuracy, abs=1e-6)
  assert continued.loss == pytest.approx(one_go.loss, rel=1e-5)
  # The whole run without a span is the same run (the same batches, the same schedule).
  plain = evaluation.evaluate(ARCH, TASK, seed=3, deterministic=True)
  assert (plain.accuracy, plain.steps) == (one_go.accuracy, one_go.steps)
  assert plain.loss == pytest.approx(one_go.loss, rel=1e-6)

  # Controls: each of the three kinds of state matters, so the test would see it lost.
  monkeypatch.setattr(evaluation, "train_stream", lambda ds, task, start: ds.repeat())  # data order
  _run(Span(1, 3, 3, resume_from=b1, save_to=str(tmp_path / "no_skip.npz")))
  assert not all(np.allclose(x, y) for x, y in zip(_state(str(tmp_path / "no_skip.npz")), b))
  monkeypatch.undo()
  # The optimizer's state (step count, momenta) zeroed but the model's kept: a different end.
  state = _state(b1)
  restarted = str(tmp_path / "reset_opt.npz")
  weights_only = str(tmp_path / "weights_only.npz")
  model_vars = _model_variable_count()
  np.savez(weights_only, *(state[:model_vars] + [np.zeros_like(v) for v in state[model_vars:]]))
  _run(Span(1, 3, 3, resume_from=weights_only, save_to=restarted))
  assert not all(np.allclose(x, y) for x, y in zip(_state(restarted), b))


def _model_variable_count() -> int:
  import search_space
  child = evaluation.proxy_child(ARCH, TASK)
  model = search_space.build_model(child, (16, 16, 1), 4)
  return len(model.variables)


def test_missing_checkpoint_trains_from_scratch_and_bad_one_is_refused(tmp_path, restore_determinism):
  # No checkpoint at budget 1: the child trains from scratch to 2, with the schedule over 3, as a
  # child trained to 2 of 3 in one go (no checkpoint written at the end: nothing continues it).
  fallback = _run(Span(1, 2, 3, resume_from=str(tmp_path / "gone.npz")))
  one_go = _run(Span(0, 2, 3))
  assert fallback.steps == one_go.steps == 10 and fallback.accuracy == one_go.accuracy
  assert os.listdir(tmp_path) == []
  bad = str(tmp_path / "bad.npz")
  np.savez(bad, np.zeros(3))
  r = _run(Span(1, 2, 3, resume_from=bad))
  assert r.status == "failed" and "another network" in r.error
  continuation.discard([bad, str(tmp_path / "never.npz")])
  assert not os.path.exists(bad)


@pytest.mark.parametrize("span", [(0, 0, 3), (2, 1, 3), (0, 4, 3), (-1, 1, 3), (0, 1.5, 3)])
def test_bad_span_is_refused(span):
  with pytest.raises(ValueError, match="span"):
    Span(*span)


@pytest.mark.slow  # default-suite time: the lean path's continuation test above stays in it
def test_model_fit_path_continues_too(tmp_path, restore_determinism, monkeypatch):
  # Several replicas or a TPU train with model.fit: the same continuation, through the optimizer's
  # own variables. Forced here on the CPU.
  monkeypatch.setattr(evaluation.lean_step, "lean_supported", lambda strategy: False)
  b1, b3, whole = (str(tmp_path / n) for n in ("b1.npz", "b3.npz", "whole.npz"))
  _run(Span(0, 1, 3, save_to=b1))
  continued = _run(Span(1, 3, 3, resume_from=b1, save_to=b3))
  one_go = _run(Span(0, 3, 3, save_to=whole))
  assert continued.steps == 10 and one_go.steps == 15
  for x, y in zip(_state(b3), _state(whole)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert continued.accuracy == pytest.approx(one_go.accuracy, abs=1e-6)
