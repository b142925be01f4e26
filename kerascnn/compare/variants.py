"""The variant grid of `kerascnn compare`: layouts x kernels x templates x widths.

A variant is one set of `kerascnn train` architecture options (template,
width multiplier, stage layout, kernel decomposition) applied to one zoo
model through the one transform pipeline (`kerascnn.transforms.pipeline`,
via `kerascnn.training.run.model_spec`): nothing here re-implements a
transform. `expand` builds the grid and `validate` checks every variant
(unknown names, widths <= 0, a variant that cannot be built at the
dataset's input size) before anything trains, raising one ValueError that
lists every problem.

Layouts:

- `"original"`: the model's own units per stage;
- `"organized"`: the 3DRF organizer (`train(organize=True)`, the model's
  default theta and rule);
- `"paper"`: the 3DRF paper's organized layout of the model (section 5.1,
  `kerascnn.transforms.organizer.PAPER_LAYOUTS`, e.g. VGG-16 {5,4,2,1,1});
- a sequence of positive ints (or `"5,4,2,1,1"`): explicit units per stage.

Kernels: None (standard convolutions) or a decomposition of
`kerascnn.transforms.decomposer.KERNELS` (`"dw_pw"`, `"dw_gpw"`, `"dw_rpw"`).

Example:

>>> grid = expand("vgg11_bn", templates=("base", "uniform"), widths=(0.5, 0.25))
>>> [v.name for v in grid][:2]
['base-w0.5', 'base-w0.25']
"""

from __future__ import annotations

import dataclasses

from kerascnn import _checks
from kerascnn.transforms import decomposer, organizer, templates

#: Layout keywords (besides explicit units per stage).
LAYOUT_KEYWORDS = ("original", "organized", "paper")
#: Kernel choices; None (or "none") keeps standard convolutions.
KERNEL_CHOICES = (None, *decomposer.KERNELS)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One architecture of the comparison.

    Attributes:
        model: the zoo model name.
        template: a canonical template name.
        width: the width multiplier (> 0).
        layout: `"original"`, `"organized"`, `"paper"` or a tuple of units per stage.
        kernel: None or a kernel decomposition name.
        stages: the explicit units per stage `train` gets (None unless the
            layout is `"paper"` or explicit).
    """

    model: str
    template: str = "base"
    width: float = 1.0
    layout: object = "original"
    kernel: str | None = None
    stages: tuple | None = None

    @property
    def layout_label(self):
        """`"original"`, `"organized"`, `"paper"` or `"5-4-2-1-1"`."""
        if isinstance(self.layout, tuple):
            return "-".join(str(d) for d in self.layout)
        return self.layout

    @property
    def curve(self):
        """The curve of the Pareto plots: layout, kernel and template (not the width)."""
        parts = [] if self.layout == "original" else [self.layout_label]
        parts += [] if self.kernel is None else [self.kernel]
        return "/".join(parts + [self.template])

    @property
    def name(self):
        """A file-name-safe unique name, e.g. `"paper_dw_rpw_base-w0.5"`."""
        return f"{self.curve.replace('/', '_')}-w{self.width:g}"

    def train_kwargs(self):
        """The architecture keyword arguments of `kerascnn.training.run.train`."""
        return dict(
            model=self.model,
            template=self.template,
            width_multiplier=float(self.width),
            stages=list(self.stages) if self.stages is not None else None,
            organize=self.layout == "organized",
            kernel=self.kernel,
        )


def parse_layout(layout):
    """A layout keyword or a tuple of positive ints; raises a ValueError otherwise."""
    if isinstance(layout, str):
        key = layout.strip().lower()
        if key in LAYOUT_KEYWORDS:
            return key
        try:
            depths = tuple(int(p) for p in key.split(","))
        except ValueError:
            depths = ()
    else:
        try:
            depths = tuple(layout)
        except TypeError:
            depths = ()
    if depths and all(_checks._is_int(d) and d >= 1 for d in depths):
        return tuple(int(d) for d in depths)
    raise ValueError(
        f"Unknown layout. Expected one of {LAYOUT_KEYWORDS} or units per stage such as "
        f"'5,4,2,1,1'. Received: layout={layout!r}"
    )


def parse_kernel(kernel):
    """None/"none"/"" -> None, else a kernel of `decomposer.KERNELS`."""
    if kernel is None or (isinstance(kernel, str) and kernel.strip().lower() in ("", "none")):
        return None
    if kernel not in decomposer.KERNELS:
        raise ValueError(
            f"Unknown kernel. Expected None or one of {sorted(decomposer.KERNELS)}. "
            f"Received: kernel={kernel!r}"
        )
    return kernel


def parse_width(width):
    """A positive finite float; raises a ValueError naming the width otherwise."""
    try:
        _checks.check_positive_number(width, "width")
    except TypeError:
        raise ValueError(f"widths must be positive numbers. Received: width={width!r}") from None
    except ValueError:
        raise ValueError(f"widths must be > 0. Received: width={width!r}") from None
    return float(width)


def paper_layout(model):
    """The 3DRF paper's organized layout of `model` (`"vgg16_bn"` -> (5, 4, 2, 1, 1))."""
    key = model[:-3] if model.endswith("_bn") else model
    if key not in organizer.PAPER_LAYOUTS:
        raise ValueError(
            "layout 'paper' needs a model with a layout in the 3DRF paper "
            f"({sorted(organizer.PAPER_LAYOUTS)}). Received: model={model!r}"
        )
    return tuple(organizer.PAPER_LAYOUTS[key])


def _as_list(values, name):
    if isinstance(values, (str, bytes)) or values is None:
        values = [values]
    values = list(values)
    if not values:
        raise ValueError(f"{name} must not be empty. Received: {name}={values!r}")
    return values


def _unique(items):
    return list(dict.fromkeys(items))


def expand(
    model, templates=templates.TEMPLATES, widths=(1.0,), layouts=("original",), kernels=(None,)
):
    """The variant grid, in the order layouts > kernels > templates > widths.

    Args:
        model: a zoo model name.
        templates: template names. Defaults to the paper's five.
        widths: width multipliers (> 0). Defaults to `(1.0,)`.
        layouts: layouts (see the module docstring). Defaults to `("original",)`.
        kernels: None or kernel decompositions. Defaults to `(None,)`.

    Returns:
        A list of `Variant` (duplicates removed). Raises a ValueError naming
        the first unknown template, layout, kernel or non-positive width.
    """
    _checks.check_string(model, "model")
    names = _unique(templates_canonical(t) for t in _as_list(templates, "templates"))
    sizes = _unique(parse_width(w) for w in _as_list(widths, "widths"))
    shapes = _unique(parse_layout(layout) for layout in _as_list(layouts, "layouts"))
    blocks = _unique(parse_kernel(k) for k in _as_list(kernels, "kernels"))
    grid = []
    for layout in shapes:
        stages = paper_layout(model) if layout == "paper" else layout
        stages = stages if isinstance(stages, tuple) else None
        for kernel in blocks:
            for template in names:
                for width in sizes:
                    grid.append(Variant(model, template, width, layout, kernel, stages))
    return grid


def templates_canonical(template):
    """`templates.canonical_template` with a ValueError for a non-string too."""
    try:
        return templates.canonical_template(template)
    except TypeError as error:
        raise ValueError(str(error)) from None


def reference(variants):
    """The base variant: base template, original layout, no kernel, the largest width.

    It is the model "with the original distribution and no reductions" of the
    templates paper's figures when width 1.0 is in the grid; otherwise the
    widest base-template variant stands in (say so when reporting). None if the
    grid has no base-template, original-layout, standard-kernel variant.
    """
    bases = [
        v for v in variants if v.template == "base" and v.layout == "original" and v.kernel is None
    ]
    return max(bases, key=lambda v: v.width) if bases else None


def validate(variants, dataset, *, classes=None, input_shape=None, train_options=None):
    """Checks that every variant can be trained on `dataset`; one ValueError lists all problems.

    Each variant goes through `TrainConfig.validate` and the training
    machinery's own spec derivation (`kerascnn.training.run.model_spec`: the
    transform pipeline), then the model's fit to the dataset's images
    (`check_model_fits_dataset`) and the transformed spec's smallest input
    size (`kerascnn.arch.geometry.minimum_input_size`) and analytic cost
    (`estimate_cost`). Nothing is built or trained.

    Args:
        variants: a list of `Variant`.
        dataset: a `kerascnn.data` dataset name.
        classes: the number of classes. Defaults to the dataset's.
        input_shape: the input shape. Defaults to the dataset's.
        train_options: other `train` keyword arguments (checked with each variant).

    Returns:
        `{variant.name: spec}` of the transformed specs.
    """
    from kerascnn import data
    from kerascnn.arch.geometry import estimate_cost, minimum_input_size
    from kerascnn.training.config import TrainConfig
    from kerascnn.training.run import check_model_fits_dataset, model_spec

    info = data.info(dataset)
    shape = tuple(input_shape or info["shape"])
    classes = classes or info["num_classes"]
    problems, specs = [], {}
    options = {k: v for k, v in (train_options or {}).items() if k != "output_dir"}
    checked_models = set()
    for variant in variants:
        try:
            if variant.model not in checked_models:
                check_model_fits_dataset(variant.model, dataset, dict(info, shape=shape))
                checked_models.add(variant.model)
            config = TrainConfig(**{**options, **variant.train_kwargs(), "dataset": dataset})
            spec, _, _ = model_spec(config.validate(), shape)
            smallest = minimum_input_size(spec)
            if smallest is None or min(shape[:2]) < smallest:
                raise ValueError(
                    f"its downsampling needs inputs of at least {smallest}x{smallest}, "
                    f"the dataset's are {shape[0]}x{shape[1]}"
                )
            estimate_cost(spec, shape, classes=classes)
            specs[variant.name] = spec
        except (ValueError, TypeError, KeyError) as error:
            problems.append(f"{variant.name}: {_checks_one_line(error)}")
    if problems:
        raise ValueError(
            f"{len(problems)} of {len(variants)} variants cannot be trained on {dataset!r} "
            f"({shape[0]}x{shape[1]}x{shape[2]}): " + "; ".join(problems)
        )
    return specs


def _checks_one_line(error):
    return " ".join(str(error).split())
