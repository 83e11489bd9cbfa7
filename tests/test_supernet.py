"""Tests for mnas_search.search.oneshot.supernet and runner: masks, exactness against build_model, tracing."""

import benchmark_modules
import numpy as np
import pytest

import search_space
from mnas_search.search.oneshot import supernet as sn

SPACE = search_space.get_space("micro")
SHAPE = (16, 16, 3)
CLASSES = 4
# Three paths of the micro space: smallest choices, largest choices, and a mix (expansion 1 with
# SE, a skipped repeat, a stride-1 first block that keeps its skip, k3 crop of a k5 slot).
ARCHS = [(0, 0, 0, 0, 0, 0) * 3,
         (1, 2, 1, 0, 1, 0, 1, 2, 1, 0, 1, 1, 1, 2, 1, 0, 1, 1),
         (0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 2, 1, 0, 0, 1)]


def make_runner(sharing=None):
  import keras

  from mnas_search.search.oneshot.runner import SupernetRunner
  net = sn.make_supernet(SPACE, 1.0, SHAPE, CLASSES, bn_momentum=0.9, seed=1,
                         sharing=sharing or sn.Sharing())
  return SupernetRunner(net, keras.optimizers.SGD(0.05, momentum=0.9),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True), calib_rows=8)


@pytest.fixture(scope="module")
def runner():
  return make_runner()


@pytest.fixture(scope="module")
def private_runner():
  return make_runner(sn.Sharing(private_weights=True))


def batch(seed, n=8):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n,) + SHAPE).astype(np.float32), rng.integers(0, CLASSES, n).astype(np.int32)


def test_slot_shapes_hold_the_largest_choices():
  got = [(s.key, s.stride, s.cin, s.cout, s.cexp, s.kernel, s.se_max, s.optional)
         for s in sn.slot_shapes(SPACE, 1.0)]
  assert got == [("s1b1", 1, 8, 8, 48, 5, 2, False), ("s1b2", 1, 8, 8, 48, 5, 2, True),
                 ("s2b1", 2, 8, 16, 48, 5, 2, False), ("s2b2", 1, 16, 16, 96, 5, 4, True),
                 ("s3b1", 2, 16, 24, 96, 5, 4, False), ("s3b2", 1, 24, 24, 144, 5, 6, True)]


def test_encode_path_asks_for_exactly_the_architectures_channels():
  arch = SPACE.decode(ARCHS[2])  # s1: k3 e1 se skip r1 f8; s2: k5 e3 noskip r2 f16; s3: k3 e6 se r1 f24
  p = sn.encode_path(SPACE, 1.0, arch)
  assert p["s1b1/kmask"].tolist() == [[0] * 5, [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0] * 5]
  assert p["s2b1/kmask"].sum() == 25
  assert (p["s1b1/e1"], p["s1b1/se"], p["s1b1/skip"], p["s1b1/active"]) == (1, 1, 1, 1)
  assert p["s1b1/exp"].sum() == 8 and p["s1b1/exp"][:8].all() and p["s1b1/semask"].tolist() == [1, 1]
  assert p["s1b2/active"] == 0
  assert (p["s2b1/e1"], p["s2b1/se"], p["s2b1/skip"]) == (0, 0, 0)
  assert p["s2b1/exp"].sum() == 24 and p["s2b1/out"].sum() == 16  # cin 8 x e3; filters 16
  assert p["s2b2/active"] == 1 and p["s2b2/exp"].sum() == 48 and p["s2b2/skip"] == 0  # noskip
  assert p["s3b1/exp"].sum() == 96 and p["s3b1/semask"].sum() == 4 and p["s3b1/out"].sum() == 24
  assert p["s3b2/active"] == 0
  shapes = {k: v.shape for k, v in p.items()}
  assert shapes == {k: v.shape for k, v in sn.encode_path(SPACE, 1.0, SPACE.decode(ARCHS[1])).items()}


def test_encode_path_refuses_scaled_or_foreign_architectures():
  arch = SPACE.decode(ARCHS[0])
  with pytest.raises(ValueError, match="allowed: a base architecture"):
    sn.encode_path(SPACE, 1.0, search_space.scale(arch, width=0.5))
  with pytest.raises(ValueError, match="has 7 stages; this space has 3"):
    sn.encode_path(SPACE, 1.0, search_space.named("efficientnet-b0"))


@pytest.mark.parametrize("indices", ARCHS)
def test_a_path_equals_its_standalone_network_with_the_shared_weights(runner, indices):
  _assert_path_equals_standalone(runner, indices)


@pytest.mark.parametrize("indices", ARCHS)
def test_with_private_weights_a_path_still_equals_its_standalone_network(private_runner, indices):
  # The private depthwise kernel and BN of expansion 1 and the private projection BN of a block
  # without its skip get their own (random) statistics below, so a path that read the shared ones,
  # or a copy that took them, would differ.
  blocks = private_runner.net.blocks
  assert sum(b.private_e1 for b in blocks) == 6 and sum(b.private_skip for b in blocks) == 4
  _assert_path_equals_standalone(private_runner, indices)


def test_zero_init_residual_blocks_that_keep_their_skip_start_as_the_identity():
  # ARCHS[1] with stage 1 at one repeat instead of two: the second block keeps its skip, so with
  # zero-initialized residual blocks the two paths give the same logits at the start (and not
  # without); a block without its skip gets its own projection BN, at gamma 1.
  fewer = list(ARCHS[1])
  fewer[4] = 0
  assert ARCHS[1][3] == 0 and ARCHS[1][4] == 1  # stage 1: skip kept, two repeats
  x, _ = batch(3)
  paths = [sn.encode_path(SPACE, 1.0, SPACE.decode(i)) for i in (ARCHS[1], fewer)]
  zero, plain = make_runner(sn.Sharing(zero_init_residual=True)), make_runner()
  np.testing.assert_allclose(zero.logits(x, paths[0]), zero.logits(x, paths[1]), atol=1e-5)
  assert np.abs(plain.logits(x, paths[0]) - plain.logits(x, paths[1])).max() > 1e-3
  for b in zero.net.blocks:
    assert b.private_skip == (b.slot.stride == 1) and not b.private_e1
    gamma = np.asarray(b.project_bn.gamma)
    assert np.all(gamma == 0) if b.slot.stride == 1 else np.all(gamma == 1)
    if b.private_skip:
      assert np.all(np.asarray(b.project_bn_noskip.gamma) == 1)


@pytest.mark.parametrize("indices", ARCHS)
def test_with_zero_init_residual_a_path_still_equals_its_standalone_network(indices):
  _assert_path_equals_standalone(make_runner(sn.Sharing(zero_init_residual=True)), indices)


def _assert_path_equals_standalone(runner, indices):
  arch = SPACE.decode(indices)
  path = sn.encode_path(SPACE, 1.0, arch)
  # Train a little so no weight is at its initial value, then give BN the same statistics.
  rng = np.random.default_rng(0)
  for i in range(2):
    runner.train_step(*batch(10 + i), sn.encode_path(SPACE, 1.0, SPACE.decode(SPACE.sample_indices(rng))))
  for bn in runner.net.bn_layers():
    bn.moving_mean.assign(rng.normal(size=bn.channels).astype(np.float32) * 0.1)
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=bn.channels).astype(np.float32))
  model = sn.build_standalone(runner.net, arch)
  assert model.count_params() == search_space.count_params(arch, CLASSES, 3)
  x, _ = batch(3)
  want = np.asarray(model(x, training=False))
  got = runner.logits(x, path)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert np.abs(want).max() > 1e-2  # the comparison is not between two zero outputs


def test_recalibration_sets_bn_to_the_batch_statistics(runner):
  arch = SPACE.decode(ARCHS[1])
  path = runner.path_tensors(sn.encode_path(SPACE, 1.0, arch))
  x, _ = batch(5)
  assert runner.recalibrate(path, [x]) == 1
  assert float(runner.net.bn_momentum) == pytest.approx(0.9)  # the training momentum is back
  batch_stats = np.asarray(runner.net.apply(x, path, "score", calib_rows=len(x)))
  np.testing.assert_allclose(runner.logits(x, path), batch_stats, rtol=1e-4, atol=1e-4)
  x2, _ = batch(6)
  runner.recalibrate(path, [x, x2])  # the mean of the two batches' statistics
  mean = runner.net.stem_bn.moving_mean.numpy()
  runner.recalibrate(path, [x])
  m1 = runner.net.stem_bn.moving_mean.numpy()
  runner.recalibrate(path, [x2])
  np.testing.assert_allclose(mean, (m1 + runner.net.stem_bn.moving_mean.numpy()) / 2, rtol=1e-5, atol=1e-6)


def test_sampling_paths_never_retraces(runner):
  rng = np.random.default_rng(7)
  x, y = batch(1)
  for _ in range(6):
    path = sn.encode_path(SPACE, 1.0, SPACE.decode(SPACE.sample_indices(rng)))
    runner.train_step(x, y, path)
    runner.score(x, x, y, path)
    runner.recalibrate(path, [x])
    runner.logits(x, path)
    runner.accuracy(x[:5], y[:5], path, batch_size=8)  # padded to the traced batch size
  other = sn.encode_path(SPACE, 1.0, SPACE.decode(ARCHS[0]))
  for _ in range(2):
    runner.train_step_paths(x, y, [path, other])
  assert runner.trace_counts == {"train": 1, "score": 1, "recalibrate": 1, "infer": 1, "grads": 1,
                                 "apply": 1}


def test_weights_round_trip_through_a_checkpoint(runner, tmp_path):
  path = sn.encode_path(SPACE, 1.0, SPACE.decode(ARCHS[1]))
  x, y = batch(2)
  f = str(tmp_path / "w.npz")
  runner.save_weights(f)
  before = runner.logits(x, path)
  runner.train_step(x, y, path)
  assert np.abs(runner.logits(x, path) - before).max() > 0
  runner.load_weights(f)
  np.testing.assert_array_equal(runner.logits(x, path), before)


# The single-path check: the supernet trained along one path only, for as long as a proxy child and
# with the child's recipe, then recalibrated and scored, must do about as well as that network
# trained alone. A training-path bug (masks, BN, the recipe) would leave it near chance instead.
SINGLE_PATH_TASK = dict(dataset="synthetic:size=16,classes=10,train=1600,test=200", resolution=16,
                        train_images=1280, val_images=320, epochs=3, batch_size=64, proxy_width=1.0,
                        learning_rate=0.05, seed=0)


@pytest.mark.parametrize("indices", [ARCHS[0]])
def test_training_along_one_path_does_as_well_as_training_that_network_alone(indices):
  from mnas_search.search.oneshot.search import train_one_path
  from mnas_search.training import evaluation
  from mnas_search.training.proxy import ProxyTask
  task = ProxyTask(**SINGLE_PATH_TASK)
  arch = SPACE.decode(indices)
  alone = evaluation.evaluate(arch, task)
  assert alone.status == "ok"
  runner, feed, path = train_one_path(SPACE, task, arch)
  runner.recalibrate(path, (feed.train_batch(s)[0] for s in range(16)))
  shared = runner.accuracy(feed.val_x, feed.val_y, path, task.batch_size)
  chance = 1 / feed.num_classes
  assert alone.accuracy > chance + 0.3, alone  # the check means something only if the child learns
  assert shared >= alone.accuracy - 0.05, (shared, alone.accuracy)


def test_the_readme_single_path_table_is_the_committed_records():
  import json
  import os
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rows = [json.loads(line) for line in open(os.path.join(root, "results", "oneshot", "single_path.jsonl"))]
  readme = open(os.path.join(root, "README.md")).read()
  names = {tuple(ARCHS[0]): "smallest choices", tuple(ARCHS[1]): "largest choices", tuple(ARCHS[2]): "mixed"}
  assert len(rows) == 6
  for r in rows:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    line = (f"| {names[tuple(r['path'])]} | {r['epochs']} ({r['steps']}) | {pct(r['alone'])} | "
            f"{pct(r['shared_before_recalibration'])} / {pct(r['shared'])} | {pct(r['untrained_path'])} |")
    assert line in readme, line
  worst = min(r["shared"] - r["alone"] for r in rows)
  assert f"within {-100 * worst:.1f} points of its network trained alone" in " ".join(readme.split())


@pytest.mark.slow  # default-suite time: one path per step trains in the single-path test above
def test_several_paths_per_step_average_their_gradients():
  # Two copies of one path give that path's gradient: the same weights as one plain step. Two
  # different paths give the mean of their gradients, applied once.
  import keras

  from mnas_search.search.oneshot.runner import SupernetRunner

  def fresh():
    net = sn.make_supernet(SPACE, 1.0, SHAPE, CLASSES, bn_momentum=0.9, seed=1)
    return SupernetRunner(net, keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), calib_rows=8)

  x, y = batch(5)
  a, b = (sn.encode_path(SPACE, 1.0, SPACE.decode(i)) for i in ARCHS[:2])
  one, two = fresh(), fresh()
  one.train_step(x, y, a)
  two.train_step_paths(x, y, [a, a])
  for u, v in zip(one.net.trainable_weights, two.net.trainable_weights):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-7)
  mixed, start = fresh(), [np.asarray(w) for w in fresh().net.trainable_weights]
  grads = [np.asarray(g) for g in mixed._grads_fn(x, y, mixed.path_tensors(a))[2]]
  grads_b = [np.asarray(g) for g in mixed._grads_fn(x, y, mixed.path_tensors(b))[2]]
  mixed.train_step_paths(x, y, [a, b])
  moved = 0
  for w0, w, ga, gb in zip(start, mixed.net.trainable_weights, grads, grads_b):
    np.testing.assert_allclose(np.asarray(w), w0 - 0.05 * (ga + gb) / 2, rtol=1e-4, atol=1e-6)
    moved += int(np.any(ga != gb))
  assert moved > 10  # the two paths do differ


def test_sandwich_paths_are_the_largest_and_smallest_networks():
  from mnas_search.search.oneshot import search as oneshot
  space = search_space.default_space()
  big, small = (space.decode(oneshot.extreme_indices(space, largest=v)) for v in (True, False))
  flops = lambda a: search_space.count_flops(a, 224, 1000)
  rng = np.random.default_rng(0)
  others = [flops(space.decode(space.sample_indices(rng))) for _ in range(50)]
  assert flops(small) < min(others) and flops(big) > max(others)
  assert {b.kernel_size for b in big.expand_blocks()} == {5} and {b.se_ratio for b in small.expand_blocks()} == {0}
  with pytest.raises(ValueError, match="paths_per_step=1 is invalid with path_rule=sandwich; allowed: an integer >= 2"):
    oneshot.OneShotConfig(space="micro", path_rule="sandwich")
  with pytest.raises(ValueError, match="path_rule='bogus' is invalid; allowed: controller, uniform, sandwich"):
    oneshot.OneShotConfig(space="micro", path_rule="bogus")
  assert "path_rule" not in oneshot.OneShotConfig(space="micro").to_params()
  assert oneshot.OneShotConfig(space="micro", path_rule="sandwich", paths_per_step=3).to_params()["paths_per_step"] == 3
  assert "private_weights" not in oneshot.OneShotConfig(space="micro").to_params()  # old params stay
  assert oneshot.OneShotConfig(space="micro", private_weights=True).to_params()["private_weights"] is True
  assert "zero_init_residual" not in oneshot.OneShotConfig(space="micro").to_params()
  zero = oneshot.OneShotConfig(space="micro", zero_init_residual=True)
  assert zero.to_params()["zero_init_residual"] is True and zero.sharing.zero_init_residual
  with pytest.raises(ValueError, match="zero_init_residual='yes' is invalid; allowed: true or false"):
    oneshot.OneShotConfig(space="micro", zero_init_residual="yes")
  with pytest.raises(ValueError, match="private_weights=1 is invalid; allowed: true or false"):
    oneshot.OneShotConfig(space="micro", private_weights=1)


def test_the_committed_supernet_tau_against_g_is_recomputed_from_its_records():
  import json
  import os

  from mnas_search.analysis import ground_truth as gt
  from mnas_search.util import fileio
  folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "oneshot",
                        "ground_truth")
  rows = fileio.read_jsonl(os.path.join(folder, "records.jsonl"))
  for run in fileio.read_jsonl(os.path.join(folder, "runs.jsonl")):
    mine = [r for r in rows if r["variant"] == run["variant"]]
    got = gt.score({r["blocks"]: r["supernet_accuracy"] for r in mine},
                   {r["blocks"]: r["g_test_accuracy"] for r in mine})
    assert (got["kendall_tau"], got["spearman_rho"], got["matched"]) == (
        run["kendall_tau"], run["spearman"], run["n_architectures"]), json.dumps(run)[:200]


def test_the_readme_table_of_one_shot_recipes_is_the_committed_runs():
  import os

  from mnas_search.util import fileio
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  module = benchmark_modules.load("oneshot_fidelity")
  folder = os.path.join(root, "results", "oneshot", "ground_truth")
  proxy = fileio.read_json(os.path.join(root, "results", "ground_truth", "summary.json"))["default_proxy"]
  table = module.variants_table(fileio.read_jsonl(os.path.join(folder, "runs.jsonl")),
                                fileio.read_jsonl(os.path.join(folder, "records.jsonl")), proxy,
                                module.g_flops(os.path.join(root, "results", "ground_truth")))
  with open(os.path.join(root, "README.md")) as f:
    readme = f.read()
  for line in table.splitlines():
    assert line in readme, line


def test_the_readme_table_of_the_one_shot_search_in_g_is_its_committed_records():
  import os

  from mnas_search.util import fileio
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  module = benchmark_modules.load("oneshot_fidelity")
  folder = os.path.join(root, "results", "oneshot", "search")
  table = module.search_table(folder, os.path.join(root, "results", "ground_truth"))
  with open(os.path.join(root, "README.md")) as f:
    readme = f.read()
  for line in table.splitlines():
    assert line.strip() in readme, line
  # The trained network is the search's own best, on both seeds, in G's regime.
  best = fileio.read_json(os.path.join(folder, "best.json"))
  g = fileio.read_jsonl(os.path.join(folder, "g", "records.jsonl"))
  assert {r["seed"] for r in g} == set(module.SEARCH_SEEDS)
  assert all(r["blocks"] == ",".join(best["blocks"]) and r["epochs"] == 6 for r in g)
  assert fileio.read_json(os.path.join(folder, "search.json"))["wall_seconds"] < 45 * 60


def test_the_sharing_benchmark_randomizes_only_what_its_variant_names():
  sharing = benchmark_modules.load("oneshot_sharing")
  space = search_space.default_space()
  base = list(space.encode(search_space.named("efficientnet-b0").replace(activation=space.activation)))
  kinds = [d.name.split("/")[-1] for d in space.decisions]
  rng = np.random.default_rng(0)
  draws = {v: [sharing.sample(v, space, base, rng) for _ in range(200)] for v in sharing.VARIANTS}
  changed = lambda v: {k for idx in draws[v] for k, a, b in zip(kinds, idx, base) if a != b}  # noqa: E731
  assert draws["b0"] == [tuple(base)] * 200
  for kind in sharing.KINDS:
    assert changed(kind) == {kind}, kind
  assert changed("exp36") == {"expansion"} and all(
      idx[i] != 0 for idx in draws["exp36"] for i, k in enumerate(kinds) if k == "expansion")
  no_e1 = draws["all_no_e1_skip_on"]
  assert all(idx[i] != 0 if k == "expansion" else (idx[i] == 0 if k == "skip" else True)
             for idx in no_e1 for i, k in enumerate(kinds))
  assert changed("all") == changed("private_all") == changed("all_lr0.02") == set(kinds)
  assert changed("zeroinit_all") == set(kinds) and changed("zeroinit_skip") == {"skip"}
  warm = lambda progress: [sharing.sample("zeroinit_warmup", space, base, rng, progress)  # noqa: E731
                           for _ in range(200)]
  safe = lambda idx: all(idx[i] != 0 if k == "expansion" else idx[i] == 0  # noqa: E731
                         for i, k in enumerate(kinds) if k in ("expansion", "skip"))
  assert all(safe(idx) for idx in warm(0.0)) and not all(safe(idx) for idx in warm(0.5))
  assert 0 < sum(map(safe, warm(0.25))) < 200


def test_the_readme_sharing_table_is_the_committed_records():
  # benchmarks/oneshot_sharing.py: each README row's loss and accuracy are its record's last window;
  # sharing.jsonl holds every variant at 250 steps, sharing_1000.jsonl two of them at 1,000.
  import json
  import os
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "README.md")) as f:
    readme = f.read()
  sharing = benchmark_modules.load("oneshot_sharing")
  for name, steps, label in (("sharing.jsonl", 250, "`{}`"), ("sharing_1000.jsonl", 1000, "`{}`, 1,000 steps")):
    with open(os.path.join(root, "results", "oneshot", name)) as f:
      records = [json.loads(line) for line in f]
    if steps == 250:
      assert sorted(r["variant"] for r in records) == sorted(sharing.VARIANTS)
    for r in records:
      assert r["steps"] == steps and len(r["loss"]) == len(r["accuracy"]) == steps // r["window"]
      cells = f" | {r['loss'][-1]:.2f} | {100 * r['accuracy'][-1]:.1f} |"
      row = next(line for line in readme.splitlines()
                 if line.startswith(f"| {label.format(r['variant'])} |"))
      assert row.endswith(cells), (row, cells)
