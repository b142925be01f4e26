"""Plots of filter distributions (the filter-template paper's Figure 2).

`plot_filter_distributions("vgg19", "vgg19.png")` draws the filters of every
layer (every block for ResNet, every module for Inception) of a zoo model for
the base distribution and every template: x is the layer index, y the
filters, one line per template. Only specs are used (no Keras model is built).
Drawing uses matplotlib's Agg canvas directly, so no global backend is set.

Example:

>>> from kerascnn.observe import plots
>>> plots.filter_distributions("vgg19")["uniform"][:3]
[344, 344, 344]
"""

from __future__ import annotations

import os

from kerascnn.transforms import templates as _templates

_UNIT_LABELS = {"resnet": "Block", "inception": "Module"}


def filter_distributions(
    name,
    *,
    templates=None,
    input_shape=None,
    variant="auto",
    width_multiplier=1.0,
    stages=None,
    filters=None,
):
    """Returns `{template: per-layer filters}` of a zoo model.

    Args:
        name: a zoo model name (see `kerascnn.zoo.list_models()`).
        templates: template names. Defaults to all of `kerascnn.transforms.templates.TEMPLATES`.
        input_shape: used to pick the variant when `variant="auto"`.
        variant: `"auto"`, `"cifar"` or `"imagenet"`. Defaults to `"auto"`.
        width_multiplier: applied after each template. Defaults to 1.0.
        stages: optional units per stage.
        filters: optional explicit base filters.
    """
    from kerascnn import zoo

    if templates is None:
        templates = _templates.TEMPLATES
    if isinstance(templates, str):
        templates = [templates]
    result = {}
    for template in templates:
        canonical = _templates.canonical_template(template)
        spec = zoo.get_spec(
            name,
            input_shape=input_shape,
            variant=variant,
            template=canonical,
            width_multiplier=width_multiplier,
            filters=filters,
            stages=stages,
        )
        result[canonical] = spec.filters()
    if not result:
        raise ValueError(f"templates must name at least one template. Received: {templates!r}")
    return result


def plot_filter_distributions(
    name,
    path,
    *,
    templates=None,
    input_shape=None,
    variant="auto",
    width_multiplier=1.0,
    stages=None,
    filters=None,
    dpi=150,
):
    """Draws filters per layer for each template and saves the figure.

    Args:
        name: a zoo model name.
        path: output file; the format follows the extension (`.png`, `.pdf`,
            `.svg`, ...). Its folder must exist.
        templates: template names. Defaults to all templates.
        input_shape: used to pick the variant when `variant="auto"`.
        variant: `"auto"`, `"cifar"` or `"imagenet"`. Defaults to `"auto"`.
        width_multiplier: applied after each template. Defaults to 1.0.
        stages: optional units per stage.
        filters: optional explicit base filters.
        dpi: resolution of raster formats. Defaults to 150.

    Returns:
        `path`.

    Example:

    >>> plot_filter_distributions("vgg19", "/tmp/vgg19.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kerascnn import zoo

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"The output folder does not exist: {folder!r}. Received: path={path!r}"
        )
    suffix = os.path.splitext(path)[1]
    if not suffix:
        raise ValueError(
            f"path needs an extension naming the format, e.g. .png or .pdf. Received: {path!r}"
        )
    info = zoo.get_info(name)
    distributions = filter_distributions(
        name,
        templates=templates,
        input_shape=input_shape,
        variant=variant,
        width_multiplier=width_multiplier,
        stages=stages,
        filters=filters,
    )
    unit = _UNIT_LABELS.get(info.family, "Layer")
    figure = Figure(figsize=(8.5, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    markers = "osD^v*"
    for i, (template, values) in enumerate(distributions.items()):
        xs = range(1, len(values) + 1)
        label = f"{template.replace('_', ' ')} (F={sum(values):,})"
        axes.plot(xs, values, marker=markers[i % len(markers)], markersize=4, label=label)
    depth = len(next(iter(distributions.values())))
    axes.set_xlabel(f"{unit} index")
    axes.set_ylabel("Filters")
    title = f"{info.name}: filters per {unit.lower()} by template"
    if width_multiplier != 1:
        title += f" (width x{width_multiplier:g})"
    axes.set_title(title)
    axes.set_xticks(range(1, depth + 1) if depth <= 32 else axes.get_xticks())
    axes.set_xlim(0.5, depth + 0.5)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    # Write to a temporary file first so a failure leaves no partial figure.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp{suffix}")
    try:
        figure.savefig(tmp, dpi=dpi, format=suffix[1:].lower(), bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError):
            reason = error.strerror or str(error)
            raise OSError(f"Cannot write the figure to {path!r}: {reason}") from None
        raise
    return path


def _run_plot_filters(args):
    from kerascnn import cli

    kwargs = cli.model_kwargs(args)
    templates = None
    if args.templates is not None:
        templates = [t for t in args.templates.split(",") if t.strip()]
    path = plot_filter_distributions(
        args.model,
        args.output,
        templates=templates,
        input_shape=kwargs["input_shape"],
        variant=kwargs["variant"],
        width_multiplier=kwargs["width_multiplier"],
        stages=kwargs.get("stages"),
        filters=kwargs.get("filters"),
    )
    print(f"Saved {path}")
    return 0


def add_plot_filters_parser(subparsers):
    """Adds `kerascnn plot-filters`: filters per layer for every template."""
    from kerascnn import cli

    parser = subparsers.add_parser(
        "plot-filters",
        help="plot filters per layer for the base distribution and every template",
        description=(
            "Draws filters per layer (per block for ResNet/Inception) of a zoo "
            "model for the base distribution and every filter template "
            "(the filter-template paper's Figure 2)."
        ),
    )
    cli.add_model_arguments(parser, classes=False, template=False)
    parser.add_argument("-o", "--output", required=True, help="output image, e.g. filters.png")
    parser.add_argument(
        "--templates",
        default=None,
        metavar="T,T,...",
        help="comma-separated templates to draw (default: all)",
    )
    # Specs only: no model is built or loaded, so no TensorFlow import.
    parser.set_defaults(func=_run_plot_filters, registration=False)
    return parser
