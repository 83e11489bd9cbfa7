"""Shared test setup.

tf-agents needs legacy Keras as `tf.keras`, which must be chosen before
TensorFlow is first imported by any test module.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
