"""`kerascnn compare` / `kerascnn.compare(...)`: the variant grid, its validation, training,
measurement, compare.json, the Pareto plots and the summary (issue #18; the templates
paper's Tables 1-2 and Figures 3-5, the 3DRF paper's Tables 3 and 6)."""

import json
import os

import pytest

from kerascnn.compare import runner, variants
from kerascnn.observe import pareto

TINY = "compact_mnist_1k5_dw"


def _reports_mtimes(output_dir):
    runs = os.path.join(output_dir, runner.RUNS_DIR)
    return {
        name: os.path.getmtime(os.path.join(runs, name, "report.json"))
        for name in sorted(os.listdir(runs))
    }


@pytest.mark.slow
def test_tiny_compare_writes_json_and_pngs_and_a_rerun_skips(tmp_path, capsys):
    import kerascnn

    out = str(tmp_path / "cmp")
    kwargs = dict(
        templates=("base", "uniform"),
        widths=(1.0, 0.5),
        dataset="embedded",
        epochs=1,
        limit=256,
        output_dir=out,
        latency_repeats=2,
        latency_calls=1,
    )
    result = kerascnn.compare(TINY, **kwargs)  # the package is callable
    printed = capsys.readouterr().out
    assert "[1/4] base-w1: training" in printed and "[4/4]" in printed and "elapsed" in printed
    assert "left)" in printed  # the estimate, once a variant has trained
    with open(os.path.join(out, "compare.json")) as f:
        payload = json.load(f)
    assert payload["command"].startswith("kerascnn.compare('compact_mnist_1k5_dw'")
    assert [r["name"] for r in payload["rows"]] == [
        "base-w1",
        "base-w0.5",
        "uniform-w1",
        "uniform-w0.5",
    ]
    assert payload["reference"] == "base-w1" and payload["reference_is_full_width"]
    for row in payload["rows"]:
        for key in ("params", "macs", "memory_train_bytes", "memory_inference_bytes"):
            assert row[key] > 0, (row["name"], key)
        assert row["latency_b1_ms"] > 0 and row["latency_b64_ms"] > 0
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["trained_epochs"] == 1
        assert row["train_time_s"] > 0 and "stability_epoch" in row
    assert payload["memory_method"].startswith("peak bytes allocated by TensorFlow")
    for name in ("pareto_params", "pareto_memory", "pareto_latency"):
        path = os.path.join(out, name + ".png")
        assert os.path.getsize(path) > 1000 and payload["files"][name] == path
    assert result["summary_line"] in printed
    assert result["summary_line"].startswith("kerascnn compare: within 0.5 point of base-w1")
    before = _reports_mtimes(out)

    again = kerascnn.compare(TINY, **kwargs)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, skipped") == 4 and "measuring" not in printed
    assert _reports_mtimes(out) == before
    assert [r["test_accuracy"] for r in again["rows"]] == [
        r["test_accuracy"] for r in payload["rows"]
    ]
    # `kerascnn compare --plot DIR` redraws from the JSON.
    for name in ("pareto_params", "pareto_memory", "pareto_latency"):
        os.remove(os.path.join(out, name + ".png"))
    from kerascnn.cli import main

    assert main(["compare", "--plot", out]) == 0
    assert os.path.exists(os.path.join(out, "pareto_latency.png"))


def test_memory_and_latency_are_positive_and_ordered_as_the_macs():
    """A width sweep of one model: more MACs, more measured memory and batch-64 latency."""
    from kerascnn import zoo
    from kerascnn.compare import measure

    models = {
        f"w{w}": zoo.build("vgg11_bn", input_shape=(32, 32, 3), classes=10, width_multiplier=w)
        for w in (0.0625, 0.25, 0.5)
    }
    rows = measure.measure_models(models, repeats=3, calls=2, aa_control=True)
    names = list(models)
    macs = [rows[n]["macs"] for n in names]
    assert macs == sorted(macs) and macs[-1] > 20 * macs[0]
    for key in ("memory_train_bytes", "memory_inference_bytes", "latency_b64_ms"):
        values = [rows[n][key] for n in names]
        assert all(v > 0 for v in values), key
        assert values == sorted(values), (key, values)
    assert rows["w0.0625"]["memory_train_bytes"] > rows["w0.0625"]["memory_inference_bytes"]
    assert rows["w0.5"]["latency_b1_ms"] > rows["w0.0625"]["latency_b1_ms"]
    assert "w0.0625 (A/A)" in rows  # the A/A control row
    assert 0.5 < rows["w0.0625 (A/A)"]["latency_ratio_b64"] < 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(templates=("base", "pyramid")), "Unknown template"),
        (dict(widths=(0.5, 0.0)), "widths must be > 0"),
        (dict(widths=(-1,)), "widths must be > 0"),
        (dict(layouts=("original", "sideways")), "Unknown layout"),
        (dict(kernels=("dw_xx",)), "Unknown kernel"),
        (dict(layouts=("paper",)), "layout 'paper' needs a model"),
        (dict(model="vgg11_bn"), "cannot take"),  # 28x28 images: VGG's 5 poolings need 32
        (dict(layouts=("1,1,1,1,1,1,1",)), "cannot be trained"),  # 7 stages for 3
    ],
)
def test_bad_inputs_raise_before_training(tmp_path, kwargs, message):
    from kerascnn.compare import compare

    model = kwargs.pop("model", TINY)
    out = tmp_path / "cmp"
    with pytest.raises(ValueError, match=message):
        compare(model, output_dir=str(out), dataset="embedded", epochs=1, limit=64, **kwargs)
    assert not out.exists()  # nothing trained, nothing written


def test_cli_bad_input_is_one_line_before_training(tmp_path, capsys):
    from kerascnn.cli import main

    out = tmp_path / "cmp"
    status = main(["compare", TINY, "--widths", "1,0", "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "--widths" in err and not out.exists()


def test_variant_grid_order_names_and_reference():
    grid = variants.expand(
        "vgg16_bn",
        templates=("base", "Reverse-Base"),
        widths=(1, 0.5),
        layouts=("original", "paper", "5,4,2,1,1"),
        kernels=(None, "dw_rpw"),
    )
    assert len(grid) == 2 * 2 * 3 * 2  # layouts x kernels x templates x widths
    assert grid[0].name == "base-w1" and grid[1].name == "base-w0.5"
    paper = [v for v in grid if v.layout == "paper"]
    assert {v.stages for v in paper} == {(5, 4, 2, 1, 1)}  # 3DRF paper, section 5.1
    assert "paper_dw_rpw_reverse-w0.5" in {v.name for v in grid}
    assert variants.reference(grid).name == "base-w1"
    kwargs = paper[-1].train_kwargs()
    assert kwargs["stages"] == [5, 4, 2, 1, 1] and kwargs["kernel"] == "dw_rpw"


def test_summary_and_pareto_front():
    rows = [
        {"name": "base-w1", "curve": "base", "test_accuracy": 0.80, "params": 1000, "macs": 10},
        {"name": "base-w0.5", "curve": "base", "test_accuracy": 0.76, "params": 260, "macs": 3},
        {"name": "uni-w0.5", "curve": "uni", "test_accuracy": 0.797, "params": 300, "macs": 5},
        {"name": "uni-w0.25", "curve": "uni", "test_accuracy": 0.79, "params": 90, "macs": 1},
    ]
    summary = runner.summarize(rows, "base-w1")
    assert summary["smallest"]["params"]["name"] == "uni-w0.5"  # 0.3 point below: matches
    assert summary["smallest"]["params"]["fraction_of_reference"] == pytest.approx(0.3)
    assert "memory_train_bytes" not in summary["smallest"]  # not measured
    assert pareto.pareto_front(rows, "params") == ["uni-w0.25", "uni-w0.5", "base-w1"]
    line = runner.summary_line(summary)
    assert (
        "within 0.5 point of base-w1 (80.00%)" in line and "params: uni-w0.5, 30% of base" in line
    )


def test_cli_passes_the_grid_and_the_recipe(tmp_path, monkeypatch):
    import kerascnn.compare
    from kerascnn.cli import main

    calls = []
    monkeypatch.setattr(kerascnn.compare, "compare", lambda *a, **k: calls.append((a, k)))
    args = ["compare", TINY, "--templates", "base,uniform", "--widths", "1,0.5"]
    args += ["--layouts", "original", "2,2,2", "--kernels", "none,dw_rpw", "--epochs", "2"]
    args += ["--limit", "64", "--stability-stopping", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    (model,), kwargs = calls[0]
    assert model == TINY and kwargs["templates"] == ["base", "uniform"]
    assert kwargs["widths"] == [1.0, 0.5] and kwargs["layouts"] == ["original", "2,2,2"]
    assert kwargs["kernels"] == ["none", "dw_rpw"] and kwargs["epochs"] == 2
    assert kwargs["limit"] == 64 and kwargs["stability_stopping"] is True
    assert kwargs["verbose"] == 1 and kwargs["output_dir"] == str(tmp_path)
