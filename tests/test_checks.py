"""Tests for `kerascnn._checks`, the shared up-front argument validation."""

import math

import numpy as np
import pytest

from kerascnn import _checks


def test_accepted_values_are_normalized():
    assert _checks.check_positive_int(np.int64(3), "n") == 3
    assert type(_checks.check_positive_int(np.int64(3), "n")) is int
    assert _checks.check_non_negative_int(0, "n") == 0
    assert _checks.check_positive_number(np.float32(0.5), "lr") == 0.5
    assert _checks.check_fraction(0.0, "p") == 0.0
    assert _checks.check_bool(np.bool_(True), "flag") is True
    assert _checks.check_one_of("max", "mode", ("min", "max")) == "max"
    assert _checks.check_verbose(np.int64(1)) == 1
    assert _checks.check_verbose("auto", allow_auto=True) == "auto"
    assert _checks.check_optional(_checks.check_positive_int, None, "n") is None
    assert _checks.check_int_sequence([1, 2], "stages", length=2) == (1, 2)
    assert _checks.check_float_dtype("float16", "dtype") == "float16"
    assert _checks.check_float_dtype(np.float32, "dtype") == "float32"
    assert _checks.check_float_dtype(None, "dtype") is None
    assert _checks.check_path("a/b", "path") == "a/b"


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: _checks.check_positive_int(0, "shuffle_buffer"),
            ValueError,
            "shuffle_buffer must be an integer >= 1. Received: shuffle_buffer=0",
        ),
        (lambda: _checks.check_positive_int(True, "n"), ValueError, "Received: n=True"),
        (lambda: _checks.check_positive_int(2.0, "n"), ValueError, "Received: n=2.0"),
        (
            lambda: _checks.check_int(11, "k", max_value=10),
            ValueError,
            "k must be an integer <= 10. Received: k=11",
        ),
        (
            lambda: _checks.check_positive_int(None, "n", allow_none=False),
            ValueError,
            "Received: n=None",
        ),
        (
            lambda: _checks.check_positive_number(math.nan, "lr"),
            ValueError,
            "lr must be a finite number > 0. Received: lr=nan",
        ),
        (
            lambda: _checks.check_fraction(1.0, "overlap"),
            ValueError,
            "overlap must be a finite number >= 0 and < 1. Received: overlap=1.0",
        ),
        (
            lambda: _checks.check_bool("yes", "blurpool"),
            TypeError,
            "blurpool must be a bool. Received: blurpool='yes'",
        ),
        (
            lambda: _checks.check_verbose("loud"),
            ValueError,
            "verbose must be one of 0, 1, 2. Received: verbose='loud'",
        ),
        (lambda: _checks.check_verbose(True), ValueError, "Received: verbose=True"),
        (
            lambda: _checks.check_one_of("MAX", "mode", ("min", "max")),
            ValueError,
            "mode must be one of 'min', 'max'. Received: mode='MAX'",
        ),
        (lambda: _checks.check_string(3, "name"), TypeError, "Received: name=3"),
        (lambda: _checks.check_path(5, "log_dir"), TypeError, "Received: log_dir=5"),
        (lambda: _checks.check_callable(5, "fn"), TypeError, "fn must be callable"),
        (
            lambda: _checks.check_int_sequence("2222", "stages"),
            ValueError,
            "Received: stages='2222'",
        ),
        (
            lambda: _checks.check_int_sequence([1, 0], "stages"),
            ValueError,
            "Received: stages=[1, 0]",
        ),
        (
            lambda: _checks.check_float_dtype("bogus", "cache_dtype"),
            ValueError,
            "Received: cache_dtype='bogus'",
        ),
        (
            lambda: _checks.check_float_dtype("int8", "cache_dtype"),
            ValueError,
            "Received: cache_dtype='int8'",
        ),
        (
            lambda: _checks.check_keras_object(_raise, "nope", "kernel_initializer", "an init"),
            ValueError,
            "kernel_initializer must be an init",
        ),
    ],
)
def test_errors_name_the_argument_and_the_value(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def _raise(value):
    raise ValueError(f"Could not interpret {value}")


def test_long_values_are_shortened():
    with pytest.raises(ValueError) as info:
        _checks.check_int_sequence(list(range(-1000, 0)), "filters")
    assert len(str(info.value)) < 300
    assert "..." in str(info.value)


def test_env_limit(monkeypatch):
    monkeypatch.delenv("KERASCNN_TEST_LIMIT", raising=False)
    assert _checks.env_limit("KERASCNN_TEST_LIMIT", 7) == 7
    monkeypatch.setenv("KERASCNN_TEST_LIMIT", "3e9")
    assert _checks.env_limit("KERASCNN_TEST_LIMIT", 7) == 3_000_000_000
    monkeypatch.setenv("KERASCNN_TEST_LIMIT", "-1")
    with pytest.raises(ValueError, match="KERASCNN_TEST_LIMIT='-1'"):
        _checks.env_limit("KERASCNN_TEST_LIMIT", 7)


def test_no_tensorflow_import():
    # The module itself (loaded on its own, without the package) imports
    # neither TensorFlow nor Keras, so that a CLI parser can use it.
    import subprocess
    import sys

    code = (
        "import importlib.util, sys; "
        f"s = importlib.util.spec_from_file_location('c', {_checks.__file__!r}); "
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
        "m.check_positive_int(1, 'n'); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "make, error, message",
    [
        ("GroupPointwiseConv2D(8, groups=2, use_bias='no')", TypeError, "use_bias='no'"),
        ("GroupPointwiseConv2D(8, kernel_initializer='nope')", ValueError, "kernel_initializer"),
        ("GroupPointwiseConv2D(0)", ValueError, "filters=0"),
        ("RollingPointwiseConv2D(8, use_bias=1)", TypeError, "use_bias=1"),
        ("RollingPointwiseConv2D(8, kernel_regularizer='nope')", ValueError, "kernel_regularizer"),
        ("SqueezeExcite(4, use_bias='yes')", TypeError, "use_bias='yes'"),
        ("SqueezeExcite(4, kernel_initializer=3)", ValueError, "kernel_initializer=3"),
        ("Cutout(4, seed=-1)", ValueError, "seed=-1"),
        ("Cutout(4, fill_value=float('nan'))", ValueError, "fill_value=nan"),
        ("BlurConv2D(4, 3, blur_first='yes')", TypeError, "blur_first='yes'"),
        ("BlurMaxPool2D(padding='full')", ValueError, "padding='full'"),
    ],
)
def test_layers_validate_arguments_up_front(make, error, message):
    from kerascnn import layers

    with pytest.raises(error) as info:
        eval(make, vars(layers))  # noqa: S307 - fixed test strings
    assert message in str(info.value)
