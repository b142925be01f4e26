"""Plots of filter distributions (the filter-template paper's Figure 2).

`plot_filter_distributions("vgg19", "vgg19.png")` draws the filters of every
layer (every block for ResNet, every module for Inception) of a zoo model for
the base distribution and every template: x is the layer index, y the
filters, one line per template. Only specs are used (no Keras model is built).
Drawing uses matplotlib's Agg canvas directly (`new_figure`), so no global
backend is set; `new_figure`, `style_axes` and `save_figure` are the one plot
style shared with `kerascnn.observe.stability_logs` and the training report.

Example:

>>> from kerascnn.observe import plots
>>> plots.filter_distributions("vgg19")["uniform"][:3]
[344, 344, 344]
"""

from __future__ import annotations

import os

from kerascnn.transforms import templates as _templates

_UNIT_LABELS = {"resnet": "Block", "inception": "Module"}


def new_figure(size):
    """A matplotlib `Figure` of `size` inches on its own Agg canvas.

    No pyplot and no global backend (`matplotlib.use`): the figure belongs to
    the caller only, as in Keras' `keras.utils.plot_model` helpers.

    Args:
        size: `(width, height)` in inches.

    Example:

    >>> figure = new_figure((6, 4))
    >>> axes = figure.add_subplot()
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def style_axes(axes, xlabel, ylabel, *, title=None, title_size=None, legend="small"):
    """Applies kerascnn's plot style: labels, optional title, light grid, a legend.

    Args:
        axes: a matplotlib `Axes`.
        xlabel: the x-axis label.
        ylabel: the y-axis label.
        title: the axes title. Defaults to None (none).
        title_size: the title's font size. Defaults to None (matplotlib's).
        legend: the legend's font size, or False for no legend (also none
            when nothing is labelled). Defaults to `"small"`.
    """
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title is not None:
        axes.set_title(title, fontsize=title_size)
    axes.grid(True, alpha=0.3)
    if legend and axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=legend)


def check_figure_path(path):
    """Checks that `path` has a format extension and an existing folder; returns it as `str`.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: `path` has no extension.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"The output folder does not exist: {folder!r}. Received: path={path!r}"
        )
    if not os.path.splitext(path)[1]:
        raise ValueError(
            f"path needs an extension naming the format, e.g. .png or .pdf. Received: {path!r}"
        )
    return path


def save_figure(figure, path, *, dpi=120, bbox_inches=None):
    """Saves `figure` to `path` (format from the extension) atomically; returns `path`.

    The figure is written to a temporary file in the same folder first, so a
    failure leaves no partial figure.

    Args:
        figure: a matplotlib `Figure` (e.g. from `new_figure`).
        path: the output file; its folder must exist.
        dpi: resolution of raster formats. Defaults to 120.
        bbox_inches: passed to `savefig`. Defaults to None.

    Raises:
        OSError: the file cannot be written (the reason is named).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] or ".png"
    figure.tight_layout()
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp{suffix}")
    try:
        figure.savefig(tmp, dpi=dpi, format=suffix[1:].lower(), bbox_inches=bbox_inches)
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError):
            reason = error.strerror or str(error)
            raise OSError(f"Cannot write the figure to {path!r}: {reason}") from None
        raise
    return path


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
    from kerascnn import zoo

    path = check_figure_path(path)
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
    figure = new_figure((8.5, 4.5))
    axes = figure.add_subplot()
    markers = "osD^v*"
    for i, (template, values) in enumerate(distributions.items()):
        xs = range(1, len(values) + 1)
        label = f"{template.replace('_', ' ')} (F={sum(values):,})"
        axes.plot(xs, values, marker=markers[i % len(markers)], markersize=4, label=label)
    depth = len(next(iter(distributions.values())))
    title = f"{info.name}: filters per {unit.lower()} by template"
    if width_multiplier != 1:
        title += f" (width x{width_multiplier:g})"
    style_axes(axes, f"{unit} index", "Filters", title=title, legend=False)
    axes.set_xticks(range(1, depth + 1) if depth <= 32 else axes.get_xticks())
    axes.set_xlim(0.5, depth + 0.5)
    axes.set_ylim(bottom=0)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(figure, path, dpi=dpi, bbox_inches="tight")
