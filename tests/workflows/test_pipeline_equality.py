"""The one transform pipeline (issue 15): `zoo.get_spec`, `kerascnn train`, the tuner and
`kerascnn optimize` give the identical spec (JSON-equal) for the same options, with a
template, the 3DRF stage organizer and a kernel decomposition together."""

import json

import keras_tuner
import pytest

from kerascnn import cli, zoo
from kerascnn.training.config import TrainConfig
from kerascnn.training.run import model_spec
from kerascnn.transforms.pipeline import transform
from kerascnn.tuning import CNNHyperModel

SHAPE = (32, 32, 3)

CASES = [
    # (model, template, width, theta, kernel)
    ("vgg16", "reverse", 0.5, 0.1, "dw_gpw"),
    ("vgg16", "reverse", 0.25, 0.1, "dw_rpw"),
    ("vgg19", "uniform", 0.5, 0.1, "dw_pw"),
    ("mobilenet", "quadratic", 0.5, 0.1, None),
]


def _json(spec):
    return json.dumps(spec.to_dict(), sort_keys=True)


def _zoo(model, template, width, theta, kernel):
    return zoo.get_spec(
        model,
        input_shape=SHAPE,
        template=template,
        width_multiplier=width,
        organize=True,
        theta=theta,
        kernel=kernel,
    )


def _train(model, template, width, theta, kernel):
    config = TrainConfig(
        model=model,
        dataset="cifar10",
        template=template,
        width_multiplier=width,
        organize=True,
        theta=theta,
        kernel=kernel,
    ).validate()
    return model_spec(config, SHAPE)[0]


def _tuner(model, template, width, theta, kernel):
    family = zoo.get_info(model).family
    hypermodel = CNNHyperModel(
        SHAPE,
        10,
        models=[model],
        templates=[template],
        width_multipliers=[width],
        layouts=["3drf"],
        kernel_types=[kernel or "std"],
        organizer_kwargs={"theta": theta},
    )
    hp = keras_tuner.HyperParameters()
    hp.Fixed("family", family)
    hp.Fixed(f"{family}_model", model)
    hp.Fixed("template", template)
    hp.Fixed("width_multiplier", width)
    hp.Fixed("stage_layout", "3drf")
    hp.Fixed("kernel_type", kernel or "std")
    return hypermodel.spec_for(hp)


def _optimize(model, template, width, theta, kernel, capsys):
    argv = ["optimize", model, "--input-shape", "32,32,3", "--template", template]
    argv += ["--width", str(width), "--theta", str(theta), "--json"]
    if kernel:
        argv += ["--kernel", kernel]
    capsys.readouterr()
    assert cli.main(argv) == 0
    return json.dumps(json.loads(capsys.readouterr().out)["final_spec"], sort_keys=True)


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_four_entry_points_give_the_same_spec(case, capsys):
    expected = _zoo(*case)
    model, template, width, theta, kernel = case
    base = zoo.get_spec(model, input_shape=SHAPE)
    direct = transform(
        base,
        organize=True,
        theta=theta,
        template=template,
        width_multiplier=width,
        kernel=kernel,
        input_shape=SHAPE,
    )
    assert _json(direct) == _json(expected)
    # The options act: the organizer changed the layout and the template the filters.
    assert [len(s.units) for s in expected.stages] != [len(s.units) for s in base.stages]
    assert expected.filters() != base.filters()
    assert _json(_train(*case)) == _json(expected)
    assert _json(_tuner(*case)) == _json(expected)
    assert _optimize(*case, capsys) == _json(expected)
