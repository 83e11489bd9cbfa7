"""Tests for mnas_search.costs.latency: keys, the cached table, prediction, measuring and Spearman."""

import json
import os

import numpy as np
import pytest

from launch_cli import run_launch
from mnas_search.costs import latency
from mnas_search.costs.latency import BlockKey, HeadKey, StemKey
from search_space import Architecture, get_space
from search_space.space import SearchSpace, StageSpace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny network whose keys are written out by hand below: the stem takes 16x16 to 8x8, stage 1
# (2 repeats of one stride-1 block with a skip) keeps 8x8, stage 2 (stride 2) gives 4x4.
TINY = Architecture(blocks=("r2_k3_s11_e1_i8_o8", "r1_k5_s22_e6_i8_o16_se0.25"), name="tiny",
                    stem_filters=8, head_filters=16, activation="relu")
TINY_STEM = StemKey(resolution=16, filters=8, activation="relu")
TINY_A = BlockKey(input_size=8, input_filters=8, output_filters=8, kernel_size=3, stride=1,
                  expand_ratio=1, se_ratio=0.0, has_skip=True, activation="relu")
TINY_B = BlockKey(input_size=8, input_filters=8, output_filters=16, kernel_size=5, stride=2,
                  expand_ratio=6, se_ratio=0.25, has_skip=False, activation="relu")
TINY_HEAD = HeadKey(input_size=4, input_filters=16, filters=16, num_classes=10, activation="relu")


def test_network_keys_follow_the_blocks_in_order():
  assert latency.network_keys(TINY, 16, 10) == [TINY_STEM, TINY_A, TINY_A, TINY_B, TINY_HEAD]


def test_skip_that_cannot_apply_shares_one_key():
  # noskip only matters where a skip is possible (stride 1, equal filters).
  strided = Architecture(blocks=("r1_k3_s22_e6_i32_o16_noskip",))
  plain = Architecture(blocks=("r1_k3_s22_e6_i32_o16",))
  assert latency.network_keys(strided, 64, 10) == latency.network_keys(plain, 64, 10)
  kept = Architecture(blocks=("r1_k3_s11_e6_i32_o32",))
  dropped = Architecture(blocks=("r1_k3_s11_e6_i32_o32_noskip",))
  assert latency.network_keys(kept, 64, 10)[1].has_skip is True
  assert latency.network_keys(dropped, 64, 10)[1].has_skip is False


def test_predict_is_the_sum_of_the_entries():
  table = {TINY_STEM: 0.5, TINY_A: 0.25, TINY_B: 4.0, TINY_HEAD: 8.0}
  assert latency.predict(TINY, 16, 10, table) == 0.5 + 2 * 0.25 + 4.0 + 8.0 == 13.0


def test_predict_names_the_missing_entries():
  table = {TINY_STEM: 0.5, TINY_A: 0.25}
  with pytest.raises(latency.MissingEntriesError,
                     match=r"lacks 2 of the 4 entries of 'tiny' at resolution 16, e.g. \{'kind': 'block'"):
    latency.predict(TINY, 16, 10, table)
  assert issubclass(latency.MissingEntriesError, ValueError)


def test_table_keys_counts():
  # micro: stage 1 (8->8 at 8x8, stride 1): 2 kernels x 3 expansions x 2 SE x 2 skips = 24, its
  # repeat is the same block; stage 2 (8 -> {8,16}, stride 2) 2x12 + repeats {8,16} at 4x4 2x24;
  # stage 3 ({8,16} -> {16,24}, stride 2) 4x12 + repeats 2x24: 192 blocks, 1 stem, 2 heads.
  micro = latency.table_keys(get_space("micro"), 16, 10)
  assert [sum(k.kind == kind for k in micro) for kind in ("stem", "block", "head")] == [1, 192, 2]
  # default: per stage the first blocks (12 variants each, 24 where the skip can apply) plus the
  # repeats (24 each): 12+24, 36+72, 144+96, 144+72, 8x12+24+72, 108+72, 36+24 = 1032, less the
  # 96->96 blocks at 14x14 that stages 4 and 5 share with stage 5's first block (2 x 24): 984.
  default = latency.table_keys(get_space("default"), 224, 1000)
  assert [sum(k.kind == kind for k in default) for kind in ("stem", "block", "head")] == [1, 984, 1]
  assert len(set(default)) == len(default)


@pytest.mark.parametrize("name, resolution", [("micro", 16), ("default", 224), ("default", 96)])
def test_table_keys_cover_sampled_architectures(name, resolution):
  space = get_space(name)
  keys = set(latency.table_keys(space, resolution, 10))
  rng = np.random.default_rng(0)
  for _ in range(300):
    arch = space.decode(space.sample_indices(rng))
    assert set(latency.network_keys(arch, resolution, 10)) <= keys


@pytest.mark.parametrize("make, fragment", [
    (lambda: BlockKey(8, 8, 8, 3, 3, 1, 0.0, False, "relu"), "stride=3 is invalid; allowed: 1 or 2"),
    (lambda: BlockKey(8, 8, 16, 3, 1, 1, 0.0, True, "relu"), "has_skip=True needs stride 1 and"),
    (lambda: BlockKey(8, 0, 8, 3, 1, 1, 0.0, False, "relu"), "input_filters=0 is invalid"),
    (lambda: BlockKey(8, 8, 8, 3, 1, 1, 1.5, False, "relu"),
     r"se_ratio=1.5 is invalid; allowed: a number in \[0, 1\]"),
    (lambda: StemKey(16, 8, "gelu"), "activation='gelu' is invalid; allowed: "),
    (lambda: HeadKey(4, 16, 16, 0, "relu"), "num_classes=0 is invalid; allowed: an integer >= 1"),
    (lambda: latency.key_from_dict({"kind": "tail"}),
     r"kind='tail' is invalid; allowed: \['block', 'head', 'stem'\]"),
    (lambda: latency.key_from_dict({"kind": "stem", "resolution": 16}),
     "a stem entry needs exactly the fields"),
    (lambda: latency.network_keys(TINY, 0, 10), "resolution=0 is invalid; allowed: an integer >= 1"),
    (lambda: latency.LatencyModel(threads=0), "threads=0 is invalid; allowed: an integer >= 1"),
    (lambda: latency.Timing(repeats=0), "repeats=0 is invalid; allowed: an integer >= 1"),
    (lambda: latency.Timing(warmup=-1), "warmup=-1 is invalid; allowed: an integer >= 0"),
    (lambda: latency.CalibrationPlan(-1), "calibration_networks=-1 is invalid"),
    (lambda: latency.measure_key(StemKey(16, 12, "relu")),
     "stem filters=12 is invalid; allowed: a channel count"),
])
def test_bad_input_is_refused(make, fragment):
  with pytest.raises(ValueError, match=fragment):
    make()


def test_keys_round_trip_through_json():
  for key in (TINY_STEM, TINY_A, TINY_B, TINY_HEAD):
    assert latency.key_from_dict(json.loads(json.dumps(latency.key_to_dict(key)))) == key


# ----------------------------------------------------------------------------- the cache
def test_cache_path_is_keyed_by_device_tf_version_and_threads(tmp_path, monkeypatch):
  path = latency.cache_path(str(tmp_path), 1, device="AMD EPYC 7B13", version="2.21.0")
  assert path == str(tmp_path / "amd-epyc-7b13__tf2.21.0__threads1__format2.json")
  others = {latency.cache_path(str(tmp_path), 2, "AMD EPYC 7B13", "2.21.0"),
            latency.cache_path(str(tmp_path), 1, "Intel(R) Xeon(R) Gold 6230", "2.21.0"),
            latency.cache_path(str(tmp_path), 1, "AMD EPYC 7B13", "2.20.1")}
  assert len(others) == 3 and path not in others
  monkeypatch.setenv("HOME", str(tmp_path))
  assert latency.cache_path(None, 4, "x", "1.0") == str(
      tmp_path / ".cache" / "mnas_search" / "latency" / "x__tf1.0__threads4__format2.json")


def test_latency_model_uses_this_devices_table(tmp_path):
  model = latency.LatencyModel(str(tmp_path), threads=2, measure_missing=False)
  assert model.device == latency.device_name() and model.device
  assert model.path == latency.cache_path(str(tmp_path), 2, latency.device_name(), latency.tf_version())
  assert model.table == {} and not os.path.exists(model.path)


def test_save_and_load_round_trip_atomically(tmp_path, monkeypatch):
  path = str(tmp_path / "t.json")
  table = {TINY_STEM: 0.5, TINY_A: 0.25}
  latency.save_table(path, table, "cpu", "2.21.0", 1, {"repeats": 30})
  assert os.listdir(tmp_path) == ["t.json"]  # no temp file left behind
  data = json.loads(open(path).read())
  assert (data["device"], data["tf_version"], data["threads"]) == ("cpu", "2.21.0", 1)
  assert data["method"] == {"repeats": 30}
  assert latency.load_table(path, "cpu", "2.21.0", 1) == table
  # A write that dies before the rename leaves the old file whole.
  def crash(src, dst):
    raise OSError("disk gone")
  monkeypatch.setattr(os, "replace", crash)
  with pytest.raises(OSError, match="disk gone"):
    latency.save_table(path, {**table, TINY_B: 4.0}, "cpu", "2.21.0", 1)
  monkeypatch.undo()
  assert latency.load_table(path, "cpu", "2.21.0", 1) == table
  assert os.listdir(tmp_path) == ["t.json"]


def test_save_keeps_entries_another_writer_added(tmp_path):
  path = str(tmp_path / "t.json")
  latency.save_table(path, {TINY_STEM: 0.5}, "cpu", "v", 1)
  latency.save_table(path, {TINY_HEAD: 8.0}, "cpu", "v", 1)  # a writer that never saw the stem
  assert latency.load_table(path, "cpu", "v", 1) == {TINY_STEM: 0.5, TINY_HEAD: 8.0}


def test_load_refuses_another_device_and_bad_files(tmp_path):
  path = str(tmp_path / "t.json")
  assert latency.load_table(path, "cpu", "v", 1) == {}  # no file yet: an empty table
  latency.save_table(path, {TINY_STEM: 0.5}, "cpu", "v", 1)
  with pytest.raises(ValueError, match=r"has device='cpu' but 'gpu' was asked for"):
    latency.load_table(path, "gpu", "v", 1)
  with pytest.raises(ValueError, match=r"has threads=1 but 4 was asked for"):
    latency.load_table(path, "cpu", "v", 4)
  with pytest.raises(ValueError, match=r"has tf_version='v' but '2.21.0' was asked for"):
    latency.load_table(path, "cpu", "2.21.0", 1)
  data = json.loads(open(path).read())
  assert data["format"] == latency.TABLE_FORMAT == 2
  for unknown in (1, None):
    open(path, "w").write(json.dumps(dict(data, format=unknown)))
    with pytest.raises(ValueError, match=rf"has format={unknown} but this version reads format=2"):
      latency.load_table(path, "cpu", "v", 1)
  del data["format"]
  open(path, "w").write(json.dumps(data))
  with pytest.raises(ValueError, match=r"has format=None but this version reads format=2"):
    latency.load_table(path, "cpu", "v", 1)
  data["format"] = 2
  data["entries"][0]["resolution"] = -3
  open(path, "w").write(json.dumps(data))
  with pytest.raises(ValueError, match=r"t.json' entry 0: resolution=-3 is invalid"):
    latency.load_table(path, "cpu", "v", 1)
  open(path, "w").write("{not json")
  with pytest.raises(ValueError, match="is not valid JSON"):
    latency.load_table(path, "cpu", "v", 1)


def test_progress_lines():
  assert str(latency.FillProgress(0, 40, 10, 0.0)) == (
      "50 latency entries: 10 cached, 40 to measure; a time estimate follows the first 5")
  assert str(latency.FillProgress(0, 0, 7, 0.0)) == "7 latency entries: 7 cached, 0 to measure; all cached"
  p = latency.FillProgress(10, 40, 10, 20.0)
  assert p.eta_s == 60.0
  assert str(p) == "measured 10/40 latency entries in 20s (2.00s each); about 1.0 min left"


# ----------------------------------------------------------------------------- calibration
def test_fit_calibration_recovers_known_terms():
  sums = [0.5, 1.0, 2.0, 3.0, 1.5]
  params = [1_000_000, 4_000_000, 2_000_000, 5_000_000, 3_000_000]
  measured = [0.2 + 1.1 * s + 0.5 * p / 1e6 for s, p in zip(sums, params)]
  c = latency.fit_calibration(sums, params, measured, 32, 10)
  assert (c.resolution, c.num_classes, c.n_networks) == (32, 10, 5)
  assert (c.overhead_ms, c.scale, c.ms_per_mparam, c.median_ratio) == pytest.approx(
      (0.2, 1.1, 0.5, 1.0), abs=1e-4)
  assert c.apply(2.0, 2_000_000) == pytest.approx(0.2 + 2.2 + 1.0, abs=1e-3)
  # Timings that the full fit would explain with a negative overhead get a fit without it.
  neg = [1.2 * s + 0.3 * p / 1e6 - 0.1 for s, p in zip(sums, params)]
  c = latency.fit_calibration(sums, params, neg, 32, 10)
  assert c.overhead_ms == 0.0 and c.scale > 0 and c.ms_per_mparam > 0
  assert c.median_ratio == pytest.approx(1.0, abs=0.05)
  # One network: a one-term fit through it.
  assert latency.fit_calibration([2.0], [1_000_000], [3.0], 16, 10).median_ratio == 1.0


@pytest.mark.parametrize("args, fragment", [
    (([], [], []), "at least one network"),
    (([1.0, 2.0], [1, 2], [1.0]), "differ in length"),
    (([1.0], [1], [0.0]), "must all be > 0"),
])
def test_fit_calibration_refuses_bad_input(args, fragment):
  with pytest.raises(ValueError, match=fragment):
    latency.fit_calibration(*args, 32, 10)


def test_calibrations_round_trip_through_the_table_file(tmp_path):
  path = str(tmp_path / "t.json")
  assert latency.load_calibrations(path, "cpu", "v", 1) == {}
  c32 = latency.Calibration(32, 10, 0.1, 1.0, 0.4, 6, 0.98)
  c224 = latency.Calibration(224, 1000, 0.0, 1.2, 0.1, 6, 1.01)
  latency.save_table(path, {TINY_STEM: 0.5}, "cpu", "v", 1, calibrations=[c32])
  latency.save_table(path, {TINY_HEAD: 8.0}, "cpu", "v", 1, calibrations=[c224])  # keeps c32
  latency.save_table(path, {TINY_A: 1.0}, "cpu", "v", 1)  # an entry-only writer keeps both
  assert latency.load_calibrations(path, "cpu", "v", 1) == {(32, 10): c32, (224, 1000): c224}
  assert len(latency.load_table(path, "cpu", "v", 1)) == 3
  data = json.loads(open(path).read())
  data["calibrations"][0].pop("scale")
  open(path, "w").write(json.dumps(data))
  with pytest.raises(ValueError, match=r"calibration 0: a calibration needs exactly the fields"):
    latency.load_calibrations(path, "cpu", "v", 1)


def test_calibrated_prediction_is_fitted_saved_and_reused(tmp_path):
  # A one-stage space whose networks share a handful of entries, so that the end-to-end timings
  # and the fit run in seconds.
  small = SearchSpace(stages=(StageSpace(stride=1, kernel=(3, 5), expansion=(1,), se_ratio=(0.0,),
                                         skip=("identity",), repeats=(1, 2), filters=(8,)),),
                      stem_filters=8, head_filters=16, activation="relu", resolution=16,
                      name="small")
  cache, timing = str(tmp_path), dict(resolution=16, num_classes=10, timing=latency.Timing(1, 3))
  model = latency.LatencyModel(cache, plan=latency.CalibrationPlan(3, small), **timing)
  assert model.calibration is None
  arch = Architecture(blocks=("r2_k5_s11_e1_i8_o8",), stem_filters=8, head_filters=16,
                      activation="relu")
  ms = model.predict_ms(arch)  # fits the calibration first, on 3 networks of `small`
  c = model.calibration
  assert c is not None and (c.resolution, c.num_classes, c.n_networks) == (16, 10, 3)
  assert min(c.overhead_ms, c.scale, c.ms_per_mparam) >= 0 and 0.5 < c.median_ratio < 2
  assert ms == pytest.approx(c.apply(model.sum_ms(arch), search_space_params(arch)))
  # Another process reads the fit from the file and predicts the same without timing anything.
  again = latency.LatencyModel(cache, measure_missing=False, **timing)
  assert again.calibration == c and again.predict_ms(arch) == ms and again.measured == 0
  # Entries without a calibration, and no measuring allowed: one line that says what is missing.
  strict = latency.LatencyModel(str(tmp_path / "other"), measure_missing=False, **timing)
  strict.table = dict(model.table)
  with pytest.raises(latency.MissingEntriesError,
                     match="lacks its end-to-end calibration at resolution 16 with 10 classes"):
    strict.predict_ms(arch)


def search_space_params(arch):
  from search_space import count_params
  return count_params(arch, 10)


# ----------------------------------------------------------------------------- measuring
def test_the_timed_flatbuffer_is_the_deployed_network():
  # The weights are constants in the flatbuffer (so it is at least 4 bytes per parameter and reads
  # no variable), and the interpreter gives the Keras model's logits: BatchNormalization with
  # non-trivial statistics folded in, not recomputed from variables on every call.
  import keras

  from search_space import count_params
  from search_space.model import build_model
  model = build_model(TINY, (16, 16, 3), 10)
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.moving_mean.shape[0]
      layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n),
                         rng.uniform(0.5, 2, n)])
  content = latency.to_tflite(model, (1, 16, 16, 3))
  assert len(content) >= 4 * count_params(TINY, 10)
  interpreter = latency._interpreter(content, (1, 16, 16, 3), 1)
  interpreter.invoke()
  x = interpreter.get_tensor(interpreter.get_input_details()[0]["index"])
  got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
  want = np.asarray(model(x, training=False))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert np.abs(want).max() > 1e-3  # the logits are not trivially zero


def test_measure_lazily_fill_and_reuse(tmp_path):
  import tensorflow as tf
  assert latency.tf_version() == tf.__version__
  cache = str(tmp_path)
  plain = dict(plan=latency.CalibrationPlan(0))  # the plain sum of the entries (calibration: below)
  strict = latency.LatencyModel(cache, resolution=16, num_classes=10, measure_missing=False,
                                timing=latency.Timing(1, 3), **plain)
  with pytest.raises(latency.MissingEntriesError, match="lacks 4 of the 4 entries"):
    strict.predict_ms(TINY)
  lazy = latency.LatencyModel(cache, resolution=16, num_classes=10, timing=latency.Timing(1, 3),
                              **plain)
  ms = lazy.predict_ms(TINY)
  assert lazy.measured == 4 and set(lazy.table) == {TINY_STEM, TINY_A, TINY_B, TINY_HEAD}
  assert all(v > 0 for v in lazy.table.values())
  assert ms == sum(lazy.table[k] for k in (TINY_STEM, TINY_A, TINY_A, TINY_B, TINY_HEAD))
  # Another process reads the same file and predicts the same without measuring.
  again = latency.LatencyModel(cache, resolution=16, num_classes=10, measure_missing=False, **plain)
  assert again.predict_ms(TINY) == ms and again.measured == 0
  # A second network that shares all but its last block measures just that one entry.
  other = TINY.replace(blocks=("r2_k3_s11_e1_i8_o8", "r1_k3_s22_e6_i8_o16_se0.25"))
  lazy.predict_ms(other)
  assert lazy.measured == 5 and len(latency.load_table(lazy.path, lazy.device, lazy.tf_version, 1)) == 5
  e2e = latency.measure_end_to_end(TINY, 16, 10, threads=1, warmup=1, repeats=3)
  assert 0 < e2e < 1000


def test_build_table_measures_only_what_is_missing(tmp_path):
  one = SearchSpace(stages=(StageSpace(stride=1, kernel=(3,), expansion=(1,), se_ratio=(0.0,),
                                       skip=("identity",), repeats=(1,), filters=(8,)),),
                    stem_filters=8, head_filters=16, activation="relu", resolution=16, name="one")
  seen = []
  plan = latency.build_table(one, latency.LatencyModel(str(tmp_path), resolution=16, num_classes=10),
                             dry_run=True)
  assert (plan.total, plan.cached, plan.measured) == (3, 0, 0) and not os.path.exists(plan.path)
  done = latency.build_table(one, latency.LatencyModel(str(tmp_path), resolution=16, num_classes=10,
                                                     timing=latency.Timing(1, 3),
                                                     plan=latency.CalibrationPlan(0)),
                             on_progress=seen.append)
  assert (done.total, done.cached, done.measured, done.calibration) == (3, 0, 3, None)
  assert [(p.done, p.total, p.cached) for p in seen] == [(0, 3, 0), (3, 3, 0)]
  table = latency.load_table(done.path, latency.device_name(), latency.tf_version(), 1)
  assert set(table) == {TINY_STEM, TINY_A, HeadKey(8, 8, 16, 10, "relu")}
  # With calibration, the build also times the space's one network end to end and fits on it.
  again = latency.build_table(one, latency.LatencyModel(str(tmp_path), resolution=16, num_classes=10,
                                                      timing=latency.Timing(1, 3)))
  assert again.measured == 0 and again.calibration.n_networks == 1
  assert latency.load_calibrations(done.path, latency.device_name(), latency.tf_version(), 1) == {
      (16, 10): again.calibration}


# ----------------------------------------------------------------------------- the CLI
def run_cli(*args, timeout=120):
  return run_launch("latency", *args, timeout=timeout)


@pytest.mark.parametrize("args, fragment", [
    (["--arch=efficientnet-b0", "--latency_threads=0"], "--latency_threads=0 is invalid"),
    (["--arch=efficientnet-b0", "--latency_warmup=-2"], "--latency_warmup=-2 is invalid"),
    (["--build", "--arch=efficientnet-b0"], "error: --build was given with --arch"),
    (["--build", "--search_space=huge"], "--search_space=huge: unknown search space 'huge'"),
    (["--arch=efficientnet-b0", "--latency_dry_run"], "--latency_dry_run goes with --build"),
    (["--arch=efficientnet-b0", "--nolatency_measure_missing"],
     "error: --latency_measure_missing=False leaves the latency table without 14 of the 14 entries "
     "of 'efficientnet-b0' at resolution 224"),
])
def test_cli_errors(tmp_path, args, fragment):
  p = run_cli(*args, f"--latency_cache_dir={tmp_path}")
  assert p.returncode == 2 and fragment in p.stderr, p.stderr


def test_cli_dry_run_counts(tmp_path):
  p = run_cli("--build", "--search_space=micro", "--latency_resolution=16", "--latency_dry_run",
              f"--latency_cache_dir={tmp_path}")
  assert p.returncode == 0, p.stderr
  assert "195 entries: 0 cached, 195 to measure (dry run: none measured)" in p.stdout
  assert os.listdir(tmp_path) == []


def test_cli_predicts_and_measures(tmp_path):
  p = run_cli("--blocks=r2_k3_s11_e1_i32_o32", "--activation=relu", "--latency_resolution=16",
              "--num_classes=10", "--latency_repeats=3", "--latency_warmup=1", "--json",
              "--latency_calibration_networks=0", f"--latency_cache_dir={tmp_path}")
  assert p.returncode == 0, p.stderr
  d = json.loads(p.stdout)
  assert (d["resolution"], d["threads"], d["entries_measured"], d["clock"]) == (16, 1, 3, "thread_cpu")
  assert d["calibration"] is None and d["sum_ms"] == d["predicted_ms"]
  table = latency.load_table(d["table"], d["device"], d["tf_version"], 1)
  assert d["predicted_ms"] == round(sum(table[k] for k in latency.network_keys(
      Architecture(blocks=("r2_k3_s11_e1_i32_o32",), activation="relu"), 16, 10)), 4)
  assert d["measured_ms"] > 0


@pytest.mark.slow  # about 25 s on 2 cores, and timing-sensitive: run it on a quiet machine
def test_table_ranks_whole_networks_as_measured_end_to_end(tmp_path):
  # Four networks at 32x32 whose costs are a few times apart: the table's sums must rank them as
  # timing each whole network does.
  nets = [Architecture(blocks=blocks, stem_filters=16, head_filters=64, activation="relu")
          for blocks in (("r1_k3_s11_e1_i16_o16",), ("r2_k3_s11_e3_i16_o16",),
                         ("r2_k5_s11_e6_i16_o32",), ("r3_k5_s11_e6_i16_o64",))]
  model = latency.LatencyModel(str(tmp_path), resolution=32, num_classes=10,
                               timing=latency.Timing(2, 15),
                               plan=latency.CalibrationPlan(0))  # the plain sums rank these already
  predicted = [model.predict_ms(a) for a in nets]
  measured = [latency.measure_end_to_end(a, 32, 10, warmup=2, repeats=15) for a in nets]
  from mnas_search.util import stats
  assert stats.spearman(predicted, measured) >= 0.8, (predicted, measured)


def test_the_committed_benchmark_figures_follow_from_its_rows():
  # results/latency/latency_lut.json (benchmarks/latency_lut.py): every headline figure is
  # recomputed from the per-network rows, and every row from its rounds and the calibration.
  from mnas_search.util import stats
  with open(os.path.join(ROOT, "results", "latency", "latency_lut.json")) as f:
    d = json.load(f)
  assert {r["resolution"] for r in d["resolutions"]} == {32, 224}
  assert d["n_networks"] >= 30
  for r in d["resolutions"]:
    res, rows = r["resolution"], r["rows"]
    assert len(rows) == r["n_networks"] >= d["n_networks"]
    cal = latency.Calibration.from_dict(r["calibration"])
    assert (cal.resolution, cal.num_classes) == (res, r["num_classes"])
    n_cal = len(r["calibration_networks"])
    assert cal.n_networks == n_cal and len(r["rounds_ms"]) == n_cal + len(rows)
    assert not {tuple(b) for b in r["calibration_networks"]} & {tuple(x["blocks"]) for x in rows}
    for row, rounds in zip(rows, r["rounds_ms"][n_cal:]):
      assert row["measured_ms"] == pytest.approx(min(rounds), abs=1e-3)
      assert row["predicted_ms"] == pytest.approx(cal.apply(row["sum_ms"], row["params"]), abs=1e-3)
    pred = [x["predicted_ms"] for x in rows]
    meas = [x["measured_ms"] for x in rows]
    assert d[f"spearman_{res}"] == r["calibrated"]["spearman"] == pytest.approx(
        stats.spearman(pred, meas), abs=1e-4)
    assert d[f"median_ratio_{res}"] == r["calibrated"]["median_ratio"] == pytest.approx(
        float(np.median(np.array(pred) / np.array(meas))), abs=1e-4)
    assert r["plain_sum"]["spearman"] == pytest.approx(
        stats.spearman([x["sum_ms"] for x in rows], meas), abs=1e-4)
