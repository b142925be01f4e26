"""Tests of kerascnn.observe.plots: the one plot style, no global matplotlib state."""

import os

import pytest
from harness import run_python

from kerascnn.observe import plots


def test_figures_use_their_own_canvas_and_no_pyplot(tmp_path):
    # Drawing must neither pick a backend (`matplotlib.use`) nor leave figures
    # in pyplot's figure manager: checked in a fresh Python. (Keras itself
    # imports pyplot, so its presence proves nothing.)
    out = run_python(
        """
        import json, sys
        import matplotlib
        from kerascnn.observe import plots, stability_logs
        from matplotlib import pyplot

        before = matplotlib.rcParams._get_backend_or_none()
        plots.plot_filter_distributions("vgg11", sys.argv[1] + "/filters.png")
        stop = stability_logs.plot_stability(
            {"c1": [0.5, 0.4, 0.4, 0.4, 0.4], "c2": [0.3, 0.2, 0.2, 0.2, 0.2]},
            sys.argv[1] + "/stability.png", decimals=1, patience=2,
        )
        print(json.dumps({
            "pyplot_figures": pyplot.get_fignums(),
            "backend_unchanged": matplotlib.rcParams._get_backend_or_none() == before,
            "stop": stop,
        }))
        """,
        tmp_path,
        env={"MPLBACKEND": None},
    )
    assert out == {"pyplot_figures": [], "backend_unchanged": True, "stop": 3}
    for name in ("filters.png", "stability.png"):
        assert os.path.getsize(tmp_path / name) > 1000


def test_style_and_save(tmp_path):
    figure = plots.new_figure((3, 2))
    axes = figure.add_subplot()
    axes.plot([1, 2], [3, 4], label="a")
    plots.style_axes(axes, "x", "y", title="t")
    assert axes.get_xlabel() == "x" and axes.get_title() == "t"
    assert axes.get_legend() is not None
    path = plots.save_figure(figure, tmp_path / "f.svg")
    assert path == str(tmp_path / "f.svg") and os.path.getsize(path) > 100
    assert os.listdir(tmp_path) == ["f.svg"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="folder"):
        plots.check_figure_path(tmp_path / "missing" / "f.png")
    with pytest.raises(ValueError, match="extension"):
        plots.check_figure_path(tmp_path / "f")
