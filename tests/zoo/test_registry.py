"""The zoo registry (`kerascnn.zoo._registry.register_model`), checked model by model."""

import inspect

import harness
import pytest

from kerascnn import zoo
from kerascnn.arch.spec import ArchSpec
from kerascnn.zoo import _registry

MODELS = zoo.list_models()


@pytest.mark.parametrize("name", MODELS)
def test_every_registered_model_has_data_and_a_builder(name):
    info = zoo.get_info(name)
    assert info.name == name and info.family and info.description
    # "v1": keras.applications' ResNet layout (ResNet-50/101/152, tests/zoo/test_resnet_variant.py).
    assert set(info.variants) <= {"cifar", "imagenet", "v1"}
    for variant in info.variants:
        spec = info.spec_fn(variant)
        assert isinstance(spec, ArchSpec) and spec.family == info.family
    builder = getattr(zoo, name)
    assert builder.__name__ == name and info.description in builder.__doc__
    params = list(inspect.signature(zoo.build).parameters)[1:]
    assert list(inspect.signature(builder).parameters) == params
    assert name in zoo.__all__


def test_register_model_as_a_decorator_and_refuses_a_duplicate():
    @zoo.register_model(family="demo", description="a demo net", variants=("cifar",))
    def demo_net(variant="cifar"):
        return zoo.get_info("vgg11").spec_fn(variant)

    try:
        assert zoo.get_info("demo-net").family == "demo"
        assert zoo.list_models("demo") == ["demo_net"]
        assert zoo.get_spec("demo_net").to_json() == zoo.get_spec("vgg11").to_json()
        with pytest.raises(ValueError, match="already registered"):
            zoo.register_model("demo_net", family="demo", description="again")(demo_net)
    finally:
        _registry._unregister("demo_net")
    assert "demo_net" not in zoo.list_models()


def test_families_and_aliases():
    families = {zoo.get_info(n).family for n in MODELS}
    assert families == {"vgg", "resnet", "inception", "mobilenet", "compact"}
    assert zoo.get_info("GoogLeNet").name == zoo.get_info("inception_v1").name == "inception"
    assert zoo.get_info("mobilenet_v1").name == "mobilenet"


def test_zoo_specs_do_not_import_keras():
    out = harness.run_python(
        """
        import json, os, sys
        os.environ["KERASCNN_CLI_DEFER_REGISTRATION"] = "1"
        from kerascnn import zoo
        zoo.get_spec("resnet18", template="uniform", kernel="dw_rpw", stages=(1, 1, 1, 1))
        print(json.dumps({"keras": "keras" in sys.modules, "models": len(zoo.list_models())}))
        """
    )
    assert out == {"keras": False, "models": len(MODELS)}
