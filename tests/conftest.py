"""Shared test setup.

tf-agents needs legacy Keras as `tf.keras`, which must be chosen before
TensorFlow is first imported by any test module.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import pytest  # noqa: E402  (after the environment above)


@pytest.fixture
def restore_determinism():
  """Op determinism is process-wide: switch it back off after the test if it was off."""
  from tensorflow.python.framework import config
  was = config.is_op_determinism_enabled()
  yield
  if not was:
    config.disable_op_determinism()
