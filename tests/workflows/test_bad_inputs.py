"""Every bad input of /work/coord/BAD_INPUTS.md (issue #12), as a parametrised test.

Each row of the list is one `Case`: the input as it was tried, the verdict
it got then (`clear`, `ok`, `raw`, `silent` or `hang`, kept in the test id so
that the "before" table stays readable) and what is expected now:

- API rows expect a `ValueError`/`TypeError` whose message names the argument
  (and the received value where it is printable) — or, for `ok` rows, no
  error and the documented behaviour.
- CLI rows expect exit status 2 and exactly one line on stderr. They run
  in-process through `kerascnn.cli.main(argv)` (cheap); set
  `KERASCNN_BAD_INPUTS_CLI=subprocess` to run each one as a real `kerascnn`
  process instead (what `tools/bad_inputs_report.py --cli subprocess` does).
- Rows that once hung or exhausted memory run under a timeout (a SIGALRM
  in the test, a subprocess in the report tool), so a regression fails the
  test instead of hanging the suite.

`run_case(case, workdir)` classifies the outcome the way the list did (the
report tool `tools/bad_inputs_report.py` prints the totals from it):
`clear` (an error naming the argument), `ok` (no error where none is due),
`raw` (an error from deep inside Keras/TensorFlow, a traceback or a message
naming nothing), `silent` (accepted although wrong) or `hang`.

Placeholders: `<ro>` is a directory that cannot be written, even by root (a
regular file used as a parent directory: every write below it fails with
`NotADirectoryError`, whatever the user; tests here run as root, for whom a
chmod 0o555 directory is writable); `<trunc-idx>` a data dir whose MNIST
train images `.gz` is truncated; `<corrupt-jpeg>` a data dir whose CIFAR-10
zip holds a corrupt JPEG; `<out>` a writable directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import zipfile

import pytest

VERDICTS = ("raw", "silent", "hang", "clear", "ok")
CLI_MODE_ENV = "KERASCNN_BAD_INPUTS_CLI"
ISOLATED_TIMEOUT_S = 120
# Marks of an error that was not written for a user.
_RAW_MARKS = ("Traceback (most recent call last)", "{{function_node", "in user code:")


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the bad-input list.

    Args:
        section: `"api"`, `"fit"` (callbacks inside `model.fit`) or `"cli"`.
        text: the input as written in the list.
        then: the verdict it got when the list was made.
        run: `(ctx) -> object`; API/fit rows call the API, CLI rows return an
            argv list (placeholders substituted by `ctx`).
        names: substrings the error message must contain (the argument, and
            the received value where sensible). Empty for `ok` rows.
        check: for `ok` rows, `(result) -> None` asserting the documented
            behaviour.
        owner: the file(s) that implement the validation.
        isolate: run in a subprocess with a timeout (rows that hung or ran
            out of memory).
    """

    section: str
    text: str
    then: str
    run: object
    names: tuple = ()
    check: object = None
    owner: str = "kerascnn/zoo, builder.py"
    isolate: bool = False

    @property
    def expect(self):
        return "ok" if self.then.startswith("ok") else "clear"

    @property
    def id(self):
        verdict = self.then.split()[0]
        slug = "".join(c if c.isalnum() or c in "=-_.," else "_" for c in self.text)
        return f"{verdict}-{self.section}-{slug.strip('_')[:60]}"


# --------------------------------------------------------------------------
# Context: temporary paths and small fixtures, made on demand.
# --------------------------------------------------------------------------
class Ctx:
    """Paths for one case; fixtures are built lazily under `workdir`."""

    CIFAR_CLASSES = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )

    def __init__(self, workdir):
        self.workdir = os.fspath(workdir)

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    @property
    def out(self):
        path = self.path("out")
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def ro(self):
        """An unwritable "directory": a regular file (writes below it fail, even for root)."""
        path = self.path("ro_file")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write("not a directory\n")
        return path

    @property
    def trunc_idx(self):
        """A data dir whose MNIST train-images .gz is cut in the middle."""
        root = self.path("trunc_idx")
        folder = os.path.join(root, "mnist")
        if os.path.isdir(folder):
            return root
        os.makedirs(folder)
        source = os.path.join(_shared_data_dir(), "mnist")
        for name in sorted(os.listdir(source)):
            if not name.endswith(".gz"):
                continue
            src, dst = os.path.join(source, name), os.path.join(folder, name)
            if name.startswith("train-images"):
                with open(src, "rb") as f:
                    data = f.read(200_000)
                with open(dst, "wb") as f:
                    f.write(data)
            else:
                os.symlink(src, dst)
        return root

    @property
    def corrupt_jpeg(self):
        """A data dir whose tiny CIFAR-10 zip holds one corrupt JPEG."""
        root = self.path("corrupt_jpeg")
        zip_path = os.path.join(root, "cifar10_jpeg.zip")
        if os.path.exists(zip_path):
            return root
        os.makedirs(root)
        jpeg = _tiny_jpeg()
        with zipfile.ZipFile(zip_path, "w") as zf:
            for split in ("train", "test"):
                for index, name in enumerate(self.CIFAR_CLASSES):
                    for k in range(2):
                        data = jpeg
                        if split == "train" and index == 3 and k == 1:
                            data = jpeg[: len(jpeg) // 3]  # truncated JPEG
                        zf.writestr(f"{split}/{name}/{k:04d}.jpg", data)
        return root

    def sub(self, text):
        """Substitutes the placeholders of a CLI row."""
        for key, attr in (
            ("<ro>", "ro"),
            ("<out>", "out"),
            ("<trunc-idx>", "trunc_idx"),
            ("<corrupt-jpeg>", "corrupt_jpeg"),
        ):
            if key in text:
                text = text.replace(key, getattr(self, attr))
        return text


def _shared_data_dir():
    return os.environ.get("KERASCNN_DATA_DIR") or "/work/shared/data"


def _tiny_jpeg():
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    pixels = (np.arange(32 * 32 * 3) % 251).astype("uint8").reshape(32, 32, 3)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


# --------------------------------------------------------------------------
# Small models and data for the rows run inside model.fit.
# --------------------------------------------------------------------------
def _data(n=16, shape=(28, 28, 1), classes=3):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *shape)).astype("float32")
    y = rng.integers(0, classes, size=(n,))
    return x, y


def _compiled(model):
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def _compact():
    from kerascnn import zoo

    return zoo.build("compact_mnist_5k", classes=3)


def _dense_only():
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(8, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _lambda_first():
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 1.0, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _branchy():
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(x)
    b = keras.layers.Conv2D(4, 1, padding="same", activation="relu", name="b")(x)
    x = keras.layers.Concatenate(name="concatenate")([a, b])
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _subclassed():
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.c1 = keras.layers.Conv2D(4, 3, activation="relu")
            self.c2 = keras.layers.Conv2D(4, 3, activation="relu")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.out(self.pool(self.c2(self.c1(x))))

    return Net()


def _frozen_compact():
    model = _compact()
    model.trainable = False
    return model


def _fit(model, callback, epochs=3, compile_model=True):
    if compile_model:
        _compiled(model)
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[callback])
    return {"model": model, "callback": callback, "history": history}


def _ld(**kwargs):
    from kerascnn.callbacks import LayerDropping

    kwargs.setdefault("warmup_epochs", 1)
    return LayerDropping(**kwargs)


def _ss(**kwargs):
    from kerascnn.callbacks import StabilityStopping

    return StabilityStopping(**kwargs)


def _lm(**kwargs):
    from kerascnn.callbacks import LayerMetrics

    return LayerMetrics(**kwargs)


def _epochs_run(n):
    def check(result):
        assert len(result["history"].epoch) == n, result["history"].epoch

    return check


def _dropped(at_least=1, cut=None):
    def check(result):
        callback = result["callback"]
        assert callback.dropped >= at_least, callback.dropped
        if cut is not None:
            assert callback.cut == cut, callback.cut
        assert len(result["history"].epoch) == 3

    return check


def _dropped_everything_allowed(result):
    callback = result["callback"]
    # Clamped: as far as the last cut point that leaves a convolution in the head.
    assert callback.dropped >= 1
    assert callback.cut == callback.plan.cuts[max(callback.plan.cuts)] or callback.cut
    assert len(result["history"].epoch) == 3


# --------------------------------------------------------------------------
# The API rows.
# --------------------------------------------------------------------------
def _build(*args, **kwargs):
    from kerascnn import zoo

    return zoo.build(*args, **kwargs)


def _b(text, then, names, model="compact_mnist_5k", isolate=False, check=None, **kwargs):
    return Case(
        "api",
        text,
        then,
        lambda ctx, m=model, kw=kwargs: _build(m, **kw),
        names=names,
        isolate=isolate,
        check=check,
    )


def _params_check(expected):
    def check(model):
        assert model.count_params() == expected, model.count_params()

    return check


_CB = "kerascnn/callbacks/"

API_CASES = [
    _b("build unknown model", "clear", ("Unknown model", "nope"), model="nope"),
    Case("api", "build model_name=123", "clear", lambda ctx: _build(123), ("123",)),
    Case("api", "build model_name=None", "clear", lambda ctx: _build(None), ("None",)),
    _b("build template='foo'", "clear", ("template", "foo"), template="foo"),
    _b("build template=3", "clear", ("template", "3"), template=3),
    _b("build width=0", "clear", ("width_multiplier", "=0"), width_multiplier=0),
    _b("build width=-1", "clear", ("width_multiplier", "-1"), width_multiplier=-1),
    _b("build width=nan", "clear", ("width_multiplier", "nan"), width_multiplier=math.nan),
    _b("build width=inf", "clear", ("width_multiplier", "inf"), width_multiplier=math.inf),
    _b(
        "build width=1e9",
        "raw",
        ("width_multiplier", "1000000000", "max_params"),
        isolate=True,
        width_multiplier=1e9,
    ),
    _b("build width='2'", "clear", ("width_multiplier", "'2'"), width_multiplier="2"),
    _b("build width=True", "clear", ("width_multiplier", "True"), width_multiplier=True),
    _b("build width=1e-6", "silent", ("width_multiplier", "1e-06"), width_multiplier=1e-6),
    _b("build stages=(0,0,0,0)", "clear", ("stages", "(0, 0, 0, 0)"), "resnet18", stages=(0,) * 4),
    _b(
        "build stages=(2,0,2,2)",
        "clear",
        ("stages", "(2, 0, 2, 2)"),
        "resnet18",
        stages=(2, 0, 2, 2),
    ),
    _b("build stages=(-1,2,2,2)", "clear", ("stages", "-1"), "resnet18", stages=(-1, 2, 2, 2)),
    _b("build stages=(2,2)", "clear", ("stages", "(2, 2)"), "resnet18", stages=(2, 2)),
    _b("build stages=(1.5,2,2,2)", "clear", ("stages", "1.5"), "resnet18", stages=(1.5, 2, 2, 2)),
    _b("build stages='2222'", "clear", ("stages", "'2222'"), "resnet18", stages="2222"),
    _b(
        "build stages=(10**6,1,1,1)",
        "hang",
        ("stages", "1000000", "max_units"),
        "resnet18",
        isolate=True,
        stages=(10**6, 1, 1, 1),
    ),
    _b("build classes=0", "clear", ("classes", "=0"), classes=0),
    _b("build classes=-3", "clear", ("classes", "-3"), classes=-3),
    _b("build classes=2.5", "clear", ("classes", "2.5"), classes=2.5),
    _b("build input_shape=(0,0,1)", "clear", ("input_shape", "(0, 0, 1)"), input_shape=(0, 0, 1)),
    _b("build input_shape=(28,28)", "clear", ("input_shape", "(28, 28)"), input_shape=(28, 28)),
    _b("build input_shape=(-28,28,1)", "clear", ("input_shape", "-28"), input_shape=(-28, 28, 1)),
    _b(
        "build input_shape=(8,8,1) resnet18",
        "ok (valid: 1x1 at the last stage)",
        (),
        "resnet18",
        check=_params_check(11182410),
        input_shape=(8, 8, 1),
    ),
    _b("build filters=[0,0]", "clear", ("filters", "[0, 0]"), "resnet18", filters=[0, 0]),
    _b("build filters=[-4,8,8,8]", "clear", ("filters", "-4"), "resnet18", filters=[-4, 8, 8, 8]),
    _b("build variant='x'", "clear", ("variant", "'x'"), "resnet18", variant="x"),
    _b("build kernel='foo'", "clear", ("kernel", "'foo'"), "mobilenet", kernel="foo"),
    # With a kernel decomposition, as tried then (without one, test_zoo.py checks them).
    _b(
        "build kernel_groups=0",
        "clear",
        ("kernel_groups", "=0"),
        "mobilenet",
        kernel="dw_gpw",
        kernel_groups=0,
    ),
    _b(
        "build kernel_overlap=2",
        "clear",
        ("kernel_overlap", "2"),
        "mobilenet",
        kernel="dw_rpw",
        kernel_overlap=2,
    ),
    _b("build head='bad'", "clear", ("head", "'bad'"), head="bad"),
    _b(
        "build pooling='median' no top",
        "clear",
        ("pooling", "'median'"),
        include_top=False,
        pooling="median",
    ),
    _b(
        "build weights='/nonexistent.h5'",
        "clear",
        ("weights", "/nonexistent.h5"),
        weights="/nonexistent.h5",
    ),
    _b("build unknown kwarg foo=1", "clear", ("foo",), foo=1),
    _b(
        "build classifier_activation='nope'",
        "raw",
        ("classifier_activation", "'nope'"),
        classifier_activation="nope",
    ),
    _b("build se_min_channels=-1", "clear", ("se_min_channels", "-1"), se_min_channels=-1),
    _b("build blurpool='yes'", "clear", ("blurpool", "'yes'"), blurpool="yes"),
]


def _c(text, then, factory, names, owner=_CB):
    return Case("api", text, then, lambda ctx, f=factory: f(ctx), names=names, owner=owner)


def _feature_cache(**kwargs):
    from kerascnn.callbacks.learn_drop.feature_cache import FeatureCache

    return FeatureCache(**kwargs)


CALLBACK_ARG_CASES = [
    _c("StabilityStopping(decimals=-1)", "clear", lambda c: _ss(decimals=-1), ("decimals", "-1")),
    _c(
        "StabilityStopping(decimals=2.5)", "clear", lambda c: _ss(decimals=2.5), ("decimals", "2.5")
    ),
    _c("StabilityStopping(patience=0)", "clear", lambda c: _ss(patience=0), ("patience", "=0")),
    _c("StabilityStopping(patience=-3)", "clear", lambda c: _ss(patience=-3), ("patience", "-3")),
    _c(
        "StabilityStopping(start_from_epoch=-1)",
        "clear",
        lambda c: _ss(start_from_epoch=-1),
        ("start_from_epoch", "-1"),
    ),
    _c("StabilityStopping(layers=5)", "clear", lambda c: _ss(layers=5), ("layers", "5")),
    _c("StabilityStopping(verbose=5)", "clear", lambda c: _ss(verbose=5), ("verbose", "5")),
    _c(
        "LayerDropping(warmup_epochs=-1)",
        "clear",
        lambda c: _ld(warmup_epochs=-1),
        ("warmup_epochs", "-1"),
    ),
    _c("LayerDropping(cache=5)", "clear", lambda c: _ld(cache=5), ("cache", "5")),
    _c(
        "LayerDropping(cache_dtype='int8')",
        "clear",
        lambda c: _ld(cache_dtype="int8"),
        ("cache_dtype", "int8"),
    ),
    _c(
        "LayerDropping(cache_dtype='bogus')",
        "raw",
        lambda c: _ld(cache_dtype="bogus"),
        ("cache_dtype", "bogus"),
    ),
    _c(
        "LayerDropping(refresh_every=0)",
        "clear",
        lambda c: _ld(refresh_every=0),
        ("refresh_every", "=0"),
    ),
    _c(
        "LayerDropping(shuffle_buffer=0)",
        "silent",
        lambda c: _ld(shuffle_buffer=0),
        ("shuffle_buffer", "=0"),
    ),
    _c(
        "LayerDropping(shuffle_buffer=-5)",
        "silent",
        lambda c: _ld(shuffle_buffer=-5),
        ("shuffle_buffer", "-5"),
    ),
    _c(
        "LayerDropping(force_drops={'a':1})",
        "clear",
        lambda c: _ld(force_drops={"a": 1}),
        ("force_drops", "'a'"),
    ),
    _c("LayerDropping(cut_points='x')", "clear", lambda c: _ld(cut_points="x"), ("cut_points",)),
    _c(
        "LayerDropping(verbose='loud')",
        "silent",
        lambda c: _ld(verbose="loud"),
        ("verbose", "'loud'"),
    ),
    _c("LayerMetrics(log_dir=5)", "clear", lambda c: _lm(log_dir=5), ("log_dir", "5")),
    _c("FeatureCache(shards=0)", "clear", lambda c: _feature_cache(shards=0), ("shards", "=0")),
    _c(
        "FeatureCache(dtype='int32')",
        "clear",
        lambda c: _feature_cache(dtype="int32"),
        ("dtype", "int32"),
    ),
]


# --------------------------------------------------------------------------
# Callbacks inside model.fit.
# --------------------------------------------------------------------------
def _f(text, then, fn, names=(), check=None):
    return Case("fit", text, then, lambda ctx, f=fn: f(ctx), names=names, check=check, owner=_CB)


FIT_CASES = [
    _f(
        "LD on dense-only model",
        "clear",
        lambda c: _fit(_dense_only(), _ld(force_drops={0: 1})),
        ("convolution",),
    ),
    _f(
        "LD on no-trainable model",
        "raw",
        lambda c: _fit(_frozen_compact(), _ld(force_drops={0: 2})),
        ("trainable",),
    ),
    _f(
        "LD on Lambda-first model",
        "ok",
        lambda c: _fit(_lambda_first(), _ld(force_drops={0: "c1"})),
        check=_dropped(1, "c1"),
    ),
    _f(
        "LD on subclassed model",
        "clear",
        lambda c: _fit(_subclassed(), _ld(force_drops={0: 1})),
        ("functional",),
    ),
    _f(
        "LD on branchy model",
        "ok",
        lambda c: _fit(_branchy(), _ld(force_drops={0: "concatenate"})),
        check=_dropped(2, "concatenate"),
    ),
    _f(
        "LD uncompiled model",
        "clear (Keras' own message)",
        lambda c: _fit(_compact(), _ld(force_drops={0: 2}), compile_model=False),
        ("compile",),
    ),
    _f(
        "LD force_drops={0:'nonexistent'}",
        "clear",
        lambda c: _fit(_compact(), _ld(force_drops={0: "nonexistent"})),
        ("force_drops", "nonexistent"),
    ),
    _f(
        "LD force_drops={0: 999}",
        "ok (clamped, documented)",
        lambda c: _fit(_compact(), _ld(force_drops={0: 999})),
        check=_dropped_everything_allowed,
    ),
    _f(
        "LD force_drops={0: -2}",
        "silent",
        lambda c: _fit(_compact(), _ld(force_drops={0: -2})),
        ("force_drops", "-2"),
    ),
    _f(
        "LD cut_points=['nope']",
        "clear",
        lambda c: _fit(_compact(), _ld(cut_points=["nope"])),
        ("cut_points", "nope"),
    ),
    _f(
        "LD shuffle_buffer=0 fit",
        "clear",
        lambda c: _fit(_compact(), _ld(shuffle_buffer=0, cache=c.out, force_drops={0: 2})),
        ("shuffle_buffer", "=0"),
    ),
    _f(
        "SS monitor unknown layer",
        "clear",
        lambda c: _fit(_compact(), _ss(layers=["no_such_layer"])),
        ("no_such_layer",),
    ),
    _f(
        "SS on dense-only model",
        "clear",
        lambda c: _fit(_dense_only(), _ss()),
        ("nothing to monitor",),
    ),
    _f(
        "SS on no-trainable model",
        "ok",
        lambda c: _fit(_frozen_compact(), _ss()),
        check=_epochs_run(3),
    ),
    _f(
        "SS uncompiled",
        "clear (Keras' own message)",
        lambda c: _fit(_compact(), _ss(), compile_model=False),
        ("compile",),
    ),
    _f(
        "LM log_dir=/proc/forbidden",
        "raw",
        lambda c: _fit(_compact(), _lm(log_dir="/proc/forbidden")),
        ("log_dir", "/proc/forbidden"),
    ),
    _f(
        "LM on subclassed",
        "ok",
        lambda c: _fit(_subclassed(), _lm(log_dir=c.path("lm_logs"))),
        check=_epochs_run(3),
    ),
]


# --------------------------------------------------------------------------
# The CLI rows: exit status 2 and exactly one line on stderr.
# --------------------------------------------------------------------------
_CLI_OWNER = "kerascnn/cli.py, train.py (CLI)"
_CLI_ROWS = [
    ("kerascnn ", ()),
    ("kerascnn bogus", ()),
    ("kerascnn train --epochs 0", ("--epochs",)),
    ("kerascnn train --epochs abc", ("--epochs",)),
    ("kerascnn train --batch-size 0", ("--batch-size",)),
    ("kerascnn train --model nope", ("nope",)),
    ("kerascnn train --dataset nope", ("nope",)),
    ("kerascnn train --width 0", ("--width",)),
    ("kerascnn train --width nan", ("--width",)),
    ("kerascnn train --stages 0,0", ("--stages",)),
    ("kerascnn train --lr -1", ("--lr|learning_rate", "-1")),
    ("kerascnn train --template foo", ("foo",)),
    ("kerascnn train --label-smoothing 1.5", ("--label-smoothing",)),
    ("kerascnn train --swa 2", ("--swa",)),
    ("kerascnn train --data-dir /nonexistent", ("/nonexistent",)),
    ("kerascnn train --layer-dropping --layer-freezing", ("--layer-",)),
    ("kerascnn train --output-dir <ro>/out --epochs 1 --limit 64", ("<ro>",)),
    ("kerascnn train --output-dir /etc/hostname --epochs 1 --limit 64", ("/etc/hostname",)),
    (
        "kerascnn train --dataset mnist --data-source idx --data-dir <trunc-idx> --epochs 1 "
        "--limit 64 --output-dir <out>",
        ("train-images-idx3-ubyte.gz",),
        "raw (exit 1, 33-line traceback)",
        "kerascnn/data/sources.py",
    ),
    (
        "kerascnn train --dataset cifar10 --data-dir <corrupt-jpeg> --epochs 1 --limit 64 "
        "--output-dir <out>",
        ("cifar10_jpeg.zip", "cat/0001.jpg"),
        "raw (exit 2, message names no file)",
        "kerascnn/data/sources.py",
    ),
    ("kerascnn train --limit 0", ("--limit",)),
    ("kerascnn train --mixed-precision --strategy foo", ("--strategy",)),
    ("kerascnn summary nope", ("nope",)),
    ("kerascnn summary resnet18 --width 0", ("--width",)),
    ("kerascnn summary resnet18 --input-shape 1,1", ("--input-shape",)),
    ("kerascnn summary resnet18 --stages 0", ("stages",)),
    ("kerascnn rf3d nope", ("nope",)),
    ("kerascnn optimize nope", ("nope",)),
    ("kerascnn tune --trials 0", ("--trials",)),
    ("kerascnn tune --trials -1 --directory <ro>/t", ("--trials",)),
    # The output is a file: `<out>/nope.png` (so that only the model is wrong).
    (
        "kerascnn plot-filters nope -o <out>",
        ("nope",),
        None,
        None,
        "plot-filters nope -o <out>/n.png",
    ),
    (
        "kerascnn plot-filters resnet18 -o <ro>/x.png",
        ("x.png",),
        "raw (exit 2, message names no file)",
        "kerascnn/plots.py",
    ),
    ("kerascnn plot-stability", ()),
    ("kerascnn plot-stability /nonexistent.json", ("/nonexistent.json",)),
    ("kerascnn plot-stability /etc/hostname", ("/etc/hostname",)),
]


def _cli_case(row):
    text, names = row[0], row[1]
    then = (row[2] if len(row) > 2 else None) or "clear (exit 2, one line)"
    owner = (row[3] if len(row) > 3 else None) or _CLI_OWNER
    argv = row[4] if len(row) > 4 else text.split(maxsplit=1)[1] if " " in text.strip() else ""
    return Case("cli", text, then, lambda ctx, a=argv: ctx.sub(a).split(), names, owner=owner)


CLI_CASES = [_cli_case(row) for row in _CLI_ROWS]

CASES = API_CASES + CALLBACK_ARG_CASES + FIT_CASES + CLI_CASES
CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "case ids must be unique"


# --------------------------------------------------------------------------
# Running and classifying one case.
# --------------------------------------------------------------------------
def _names_match(message, name):
    """`name` (alternatives separated by "|"; a CLI flag also matches its
    Python name, `--batch-size` -> `batch_size`) occurs in `message`."""
    message = message.lower()
    for alternative in name.lower().split("|"):
        python_name = alternative.lstrip("-").replace("-", "_")
        if alternative in message or (alternative.startswith("--") and python_name in message):
            return True
    return False


def _message_verdict(message, names):
    if any(mark in message for mark in _RAW_MARKS):
        return "raw"
    return "clear" if all(_names_match(message, n) for n in names) else "raw"


def _run_api(case, ctx):
    try:
        result = case.run(ctx)
    except (ValueError, TypeError) as error:
        message = f"{type(error).__name__}: {error}"
        if case.expect == "ok":
            return "raw", message
        return _message_verdict(message, case.names), message
    except Exception as error:  # noqa: BLE001 - any other error is a raw one
        return "raw", f"{type(error).__name__}: {str(error)[:300]}"
    if case.expect != "ok":
        return "silent", f"NO ERROR -> {str(result)[:120]}"
    try:
        if case.check is not None:
            case.check(result)
    except AssertionError as error:
        return "silent", f"accepted but wrong: {error}"
    return "ok", "no error, documented behaviour"


def _cli_verdict(case, ctx, rc, stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    message = " | ".join(lines[-3:])[:400]
    detail = f"exit {rc}, {len(lines)} stderr line(s): {message}"
    if rc == 0:
        return "silent", detail
    if rc != 2 or len(lines) != 1:
        return "raw", detail
    names = tuple(ctx.sub(n) for n in case.names)
    return _message_verdict(lines[0], names), detail


def _run_cli_inprocess(case, ctx):
    from kerascnn import cli

    argv = case.run(ctx)
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = cli.main(argv)
    except SystemExit as exit_:
        rc = exit_.code if isinstance(exit_.code, int) else 1
    except Exception as error:  # noqa: BLE001 - an escaping exception is a traceback
        return "raw", f"{type(error).__name__} escaped main(): {str(error)[:300]}"
    return _cli_verdict(case, ctx, rc, err.getvalue())


def _run_cli_subprocess(case, ctx, timeout=ISOLATED_TIMEOUT_S):
    argv = case.run(ctx)
    command = [sys.executable, "-m", "kerascnn", *argv]
    env = dict(os.environ, KERASCNN_DATA_DIR=_shared_data_dir())
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ctx.workdir
        )
    except subprocess.TimeoutExpired:
        return "hang", f"still running after {timeout} s"
    return _cli_verdict(case, ctx, proc.returncode, proc.stderr)


def _run_isolated(case, ctx, timeout=ISOLATED_TIMEOUT_S):
    """Runs an API case in a fresh interpreter; a timeout is a hang."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import test_bad_inputs as t; "
        "print('VERDICT ' + json.dumps(t.run_case(t.CASES_BY_ID[sys.argv[2]], sys.argv[3], "
        "isolated=False)))"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, "-c", code, here, case.id, ctx.workdir]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hang", f"still running after {timeout} s"
    for line in proc.stdout.splitlines():
        if line.startswith("VERDICT "):
            return tuple(json.loads(line[len("VERDICT ") :]))
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return "raw", f"subprocess exit {proc.returncode}: {tail[:300]}"


class _Alarm(BaseException):  # not swallowed by `except Exception`
    pass


def _run_with_alarm(case, ctx, timeout=ISOLATED_TIMEOUT_S):
    """Runs an API case in-process; SIGALRM after `timeout` s makes it a hang.

    Cheaper than a fresh interpreter (no second TensorFlow import); the rows
    that once hung did so in Python code (spec expansion, layer building),
    which the alarm interrupts.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _run_isolated(case, ctx, timeout)

    def on_alarm(signum, frame):
        raise _Alarm()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    try:
        return _run_api(case, ctx)
    except _Alarm:
        return "hang", f"still running after {timeout} s"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_case(case, workdir, *, isolated=True, cli_mode=None):
    """Runs `case` in `workdir`; returns `(verdict, message)`.

    Args:
        case: a `Case`.
        workdir: an existing writable directory for the case's files.
        isolated: how to run the `case.isolate` rows (those that once hung
            or ran out of memory): True (default) in a fresh interpreter
            with a timeout, `"alarm"` in-process under a SIGALRM timeout,
            False plainly.
        cli_mode: `"inprocess"` or `"subprocess"`; None reads the
            `KERASCNN_BAD_INPUTS_CLI` environment variable (default
            in-process).
    """
    ctx = Ctx(workdir)
    if case.section == "cli":
        mode = cli_mode or os.environ.get(CLI_MODE_ENV, "inprocess")
        if mode == "subprocess":
            return _run_cli_subprocess(case, ctx)
        return _run_cli_inprocess(case, ctx)
    if case.isolate and isolated == "alarm":
        return _run_with_alarm(case, ctx)
    if case.isolate and isolated:
        return _run_isolated(case, ctx)
    return _run_api(case, ctx)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, tmp_path):
    # The former hang / out-of-memory rows run in-process under an alarm
    # (`tools/bad_inputs_report.py` runs them in a fresh interpreter).
    verdict, message = run_case(case, tmp_path, isolated="alarm")
    assert verdict == case.expect, f"{case.text!r} [owner: {case.owner}]: {verdict}: {message}"


def test_the_list_has_all_rows():
    # 60 API rows (builders and constructors), 17 inside model.fit, 35 CLI.
    assert len(API_CASES) + len(CALLBACK_ARG_CASES) == 60
    assert len(FIT_CASES) == 17
    assert len(CLI_CASES) == 35
    assert len(CASES) == 112
    counts = {v: sum(c.then.split()[0] == v for c in CASES) for v in VERDICTS}
    assert counts == {"raw": 8, "silent": 5, "hang": 1, "clear": 92, "ok": 6}, counts
