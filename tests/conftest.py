"""Shared pytest setup: quiet TensorFlow, a fresh Keras session and seed per test."""

import itertools
import os
import sys

# Must be set before TensorFlow is imported (keras imports it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Tests in every tests/<area>/ folder import the shared harness as `harness`.
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import harness  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402

# A full garbage collection costs ~0.3 s once TensorFlow is loaded; doing it
# after every one of the suite's hundreds of tests would add minutes, so the
# session is cleared after every test and memory freed every few tests.
_GC_EVERY = 16
_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Seeds every test and clears the Keras session after it.

    Clearing keeps the global graph/name state and memory small across the
    hundreds of models the zoo tests build.
    """
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session(free_memory=next(_counter) % _GC_EVERY == 0)


@pytest.fixture
def tiny_model():
    """A fresh `harness.tiny_model()` (layers c1, c2, head; input 8x8x1, 3 classes)."""
    return harness.tiny_model()


@pytest.fixture
def tiny_data():
    """`harness.tiny_data()`: 16 random 8x8x1 images and labels in [0, 3)."""
    return harness.tiny_data()


@pytest.fixture
def repo_root():
    """The repository root (the directory holding `kerascnn/` and `tests/`)."""
    return harness.ROOT
