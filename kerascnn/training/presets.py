"""Named recipes of `kerascnn train`: several techniques switched on by one name.

`train(recipe="efficient")` (`kerascnn train --recipe efficient`) is a
shorthand for a set of `train` options. The recipe sets only the options
left at their defaults: anything given explicitly wins
(`--recipe efficient --template uniform` keeps the uniform template), and
the report's `"recipe"` entry lists what the recipe set and what the user
overrode. (Not to be confused with `kerascnn.training.recipe`, the factory
of optimizers, schedules and losses.)

The `"efficient"` recipe combines what the five papers make cheap, in one
run: the 3DRF-organized stage layout (`organize`), a filter template,
BlurPool, stability stopping and Learn&Drop layer dropping, each with its
own defaults. The template is `"base"`: every other template costs 2.3-28x
the MACs at the same width on VGG-11-BN, MobileNet and ResNet-18, so it
cannot make training cheaper. The ablation of `benchmarks/bench_recipe.py`
(on a validation split held out of the training data, never the test
split; `docs/recipe.md`) measured what each part costs and gains: on
1/4-width VGG-11-BN the recipe trains 75% faster than the plain model but
stability stopping, firing at epoch 19 of 60 under a cosine schedule, costs
about 8 points; no setting tried met 1 point.

This module imports neither TensorFlow nor Keras.

Example:

```python
from kerascnn.training.config import TrainConfig

config = TrainConfig(model="vgg11_bn", dataset="cifar10", recipe="efficient").validate()
config.organize, config.blurpool, config.stability_stopping, config.layer_dropping
# -> (True, True, True, True)
```
"""

from __future__ import annotations

from kerascnn import _checks

#: The recipes by name: `{option: value}` set on the options left at their defaults.
RECIPES = {
    "efficient": {
        "organize": True,
        "template": "base",
        "blurpool": True,
        "stability_stopping": True,
        "layer_dropping": True,
    },
}


def check_recipe(name):
    """Returns `name` if it is None or a recipe of `RECIPES`, else raises a ValueError.

    Example:

    >>> check_recipe("efficient")
    'efficient'
    """
    return _checks.check_one_of(name, "recipe", tuple(RECIPES), allow_none=True)


def recipe_options(name, given, defaults):
    """What recipe `name` sets, given the options' values and defaults.

    Args:
        name: a recipe of `RECIPES` (or None: no recipe).
        given: `{option: value}` of the run (a `TrainConfig`'s fields).
        defaults: `{option: default}` (`TrainConfig.defaults()`).

    Returns:
        `(applied, overridden)`: the recipe's options the run takes (those
        left at their defaults) and those the user gave another value,
        `{option: the user's value}`.

    Example:

    >>> defaults = {"organize": False, "template": "base", "blurpool": False,
    ...             "stability_stopping": False, "layer_dropping": False}
    >>> applied, overridden = recipe_options(
    ...     "efficient", dict(defaults, blurpool=False, template="uniform"), defaults)
    >>> sorted(applied), overridden
    (['blurpool', 'layer_dropping', 'organize', 'stability_stopping'], {'template': 'uniform'})
    """
    if check_recipe(name) is None:
        return {}, {}
    applied, overridden = {}, {}
    for option, value in RECIPES[name].items():
        current = given.get(option, defaults[option])
        if current == defaults[option]:
            applied[option] = value
        elif current != value:
            overridden[option] = current
    return applied, overridden
