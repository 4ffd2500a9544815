"""Tests of resnet_tutorial.plot: each figure shows the data it was given, titled and labelled."""

import dataclasses
import io
import math

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from resnet_tutorial import measure, plot
from resnet_tutorial.train import History

CLASSES = ["plane", "car", "bird"]


def history(train_error, test_error):
    n = len(train_error)
    return History(
        epoch=list(range(1, n + 1)),
        train_loss=[1.0] * n,
        train_error=list(train_error),
        test_loss=[1.0] * n,
        test_error=list(test_error),
        lr=[0.1] * n,
        seconds=[1.0] * n,
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def suptitle(fig: Figure) -> str:
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# --------------------------------------------------------------------------- style


def test_style_does_not_leak_into_the_callers_matplotlib_settings():
    before = dict(mpl.rcParams)
    plot.training_curves({"a": history([0.5, 0.4], [0.6, 0.5])})
    plot.residual_block_diagram()
    assert dict(mpl.rcParams) == before
    with plot.style():
        assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == list(plot.PALETTE)
    assert dict(mpl.rcParams) == before


def test_figures_are_not_registered_with_pyplot():
    plot.training_curves({"a": history([0.5], [0.6])})
    assert plt.get_fignums() == []  # a notebook shows the returned figure once, as the value


# --------------------------------------------------------------------------- training curves


def test_training_curves_draw_train_thin_dashed_and_test_bold_in_percent_as_fig_6():
    runs = {
        "plain-20": history([0.50, 0.30, 0.20], [0.55, 0.40, 0.35]),
        "resnet-20": {
            "epoch": [1, 2, 3],
            "train_error": [0.4, 0.2, 0.1],
            "test_error": [0.45, 0.3, 0.2],
        },
    }
    fig = plot.training_curves(runs, title="CIFAR-10")
    ax = fig.axes[0]
    assert isinstance(fig, Figure)
    assert ax.get_title() == "CIFAR-10"
    assert ax.get_xlabel() == "epoch"
    assert "(%)" in ax.get_ylabel()
    lines = {line.get_label(): line for line in ax.lines}
    assert len(ax.lines) == 4
    for name, run in runs.items():
        train, test = lines[f"{name} train"], lines[f"{name} test"]
        get = run.__getitem__ if isinstance(run, dict) else run.__getattribute__
        assert train.get_linestyle() == "--" and test.get_linestyle() == "-"
        assert train.get_linewidth() < test.get_linewidth()
        assert train.get_color() == test.get_color()
        np.testing.assert_allclose(train.get_ydata(), 100 * np.array(get("train_error")))
        np.testing.assert_allclose(test.get_ydata(), 100 * np.array(get("test_error")))
        np.testing.assert_array_equal(train.get_xdata(), get("epoch"))
    # one colour per run, the palette's in the runs' order, so the runs are told apart
    colors = [lines[f"{name} train"].get_color() for name in runs]
    assert colors == list(plot.PALETTE[:2]) and plot.PALETTE[0] != plot.PALETTE[1]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["plain-20", "resnet-20", "train", "test"]


def test_training_curves_name_the_held_out_curve():
    fig = plot.training_curves({"a": history([0.5], [0.6])}, held_out="validation")
    labels = {line.get_label() for line in fig.axes[0].lines}
    assert labels == {"a train", "a validation"}
    assert "validation" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_training_curves_with_seeds_draw_the_mean_and_a_min_max_band():
    seeds = [history([0.5, 0.3], [0.6, 0.4]), history([0.3, 0.1], [0.4, 0.2])]
    fig = plot.training_curves({"resnet-20": seeds})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    np.testing.assert_allclose(lines["resnet-20 train"].get_ydata(), [40.0, 20.0])
    np.testing.assert_allclose(lines["resnet-20 test"].get_ydata(), [50.0, 30.0])
    assert len(ax.collections) == 1  # one band a network: around its test error
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(20.0) and band.max() == pytest.approx(60.0)
    fig = plot.training_curves({"resnet-20": seeds}, band="train")
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]  # the training errors' range
    assert len(fig.axes[0].collections) == 1
    assert band.min() == pytest.approx(10.0) and band.max() == pytest.approx(50.0)
    with pytest.raises(ValueError, match=r"band must be 'train' or 'test' \(held_out\), got 'val'"):
        plot.training_curves({"resnet-20": seeds}, band="val")


def test_training_curves_reject_percentages_where_fractions_belong():
    # 35 (a percentage) would be drawn as 3500 %, off a chart with ylim=(0, 100)
    with pytest.raises(ValueError, match=r"runs\['a'\].train_error must be fractions"):
        plot.training_curves({"a": history([35.0], [40.0])})
    with pytest.raises(ValueError, match="divide percentages by 100"):
        plot.paper_curves({"p": {"a": history([0.3], [40.0])}}, title="t")


def test_paper_curves_draws_each_run_its_lr_drops_and_the_published_error():
    runs = {"plain": {"a": history([0.5, 0.2], [0.6, 0.3])},
            "residual": {"b": history([0.4, 0.1], [0.5, 0.25])}}  # fmt: skip
    fig = plot.paper_curves(runs, title="where", lr_drops=(1.5,), reference={"Table 6": 0.0875})
    assert suptitle(fig) == "where" and [ax.get_title() for ax in fig.axes] == list(runs)
    plain = fig.axes[0].lines
    np.testing.assert_allclose(plain[0].get_ydata(), [50, 20])  # train, dashed and thin
    np.testing.assert_allclose(plain[1].get_ydata(), [60, 30])  # test, solid and bold
    assert plain[0].get_linestyle() == "--" and plain[1].get_linewidth() > plain[0].get_linewidth()
    for ax in fig.axes:
        drop, level = ax.lines[2], ax.lines[3]
        np.testing.assert_allclose(drop.get_xdata(), [1.5, 1.5])
        np.testing.assert_allclose(level.get_ydata(), [8.75, 8.75])  # percent, as the curves
        assert "Table 6" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match=r"reference\['T'\] must be fractions"):
        plot.paper_curves(runs, title="t", reference={"T": 8.75})


def test_paper_curves_join_the_tested_epochs_and_average_seeds_with_a_band():
    nan = math.nan
    seeds = [history([0.6, 0.4, 0.2], [nan, 0.5, 0.3]), history([0.4, 0.2, 0.1], [nan, 0.3, 0.2])]
    ax = plot.paper_curves({"ResNet": {"r20": seeds}}, title="t").axes[0]
    train, test = ax.lines[0], ax.lines[1]
    np.testing.assert_allclose(train.get_ydata(), [50, 30, 15])  # the seeds' mean, every epoch
    np.testing.assert_allclose(test.get_xdata(), [2, 3])  # epoch 1 had no test pass
    np.testing.assert_allclose(test.get_ydata(), [40, 25])
    assert test.get_marker() == "o"  # sparse test passes are marked
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(20.0) and band.max() == pytest.approx(50.0)


def test_time_to_error_puts_each_tested_epoch_at_its_summed_seconds():
    slow = History(epoch=[1, 2], train_loss=[1, 1], train_error=[0.5, 0.3], test_loss=[1, 1],
                   test_error=[0.4, 0.2], lr=[0.1, 0.1], seconds=[10.0, 30.0])  # fmt: skip
    fast = History(epoch=[1, 2, 3], train_loss=[1] * 3, train_error=[0.5] * 3,
                   test_loss=[math.nan, 1, 1], test_error=[math.nan, 0.3, 0.25],
                   lr=[0.1] * 3, seconds=[2.0, 3.0, 4.0])  # fmt: skip
    fig = plot.time_to_error({"slow": slow, "fast": [fast, fast]}, title="where",
                             reference={"Table 6": 0.0875})  # fmt: skip
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [10, 40])  # 10 s, then 10 + 30 s
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [40, 20])
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [5, 9])  # the untested epoch left out
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [30, 25])
    np.testing.assert_allclose(ax.lines[3].get_ydata(), [8.75, 8.75])
    assert ax.get_xscale() == "log" and ax.get_title() == "where"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["slow", "fast", "Table 6"]
    with pytest.raises(ValueError, match=r"runs\['slow'\].test_error must be fractions"):
        plot.time_to_error({"slow": dataclasses.replace(slow, test_error=[40, 20])}, title="t")


def test_lr_schedule_puts_epochs_on_x_and_a_log_y():
    rates = [0.1] * 4 + [0.01] * 4
    fig = plot.lr_schedule({"step": rates}, steps_per_epoch=2, log=True)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.arange(8) / 2)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), rates)
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "learning rate"
    assert ax.get_yscale() == "log"
    assert ax.get_title()
    assert plot.lr_schedule({"step": rates}).axes[0].get_xlabel() == "iteration"
    with pytest.raises(ValueError, match=r"schedules\['zero'\] has a value <= 0"):
        plot.lr_schedule({"zero": [0.1, 0.0]}, log=True)  # a log axis would leave it out


# --------------------------------------------------------------------------- images


def test_image_grid_per_class_shows_one_row_per_class_with_the_right_images():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0])
    images = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    fig = plot.image_grid(images, labels, CLASSES, per_class=2)
    ax = fig.axes[0]
    assert texts(fig) == CLASSES  # row labels, in class order
    assert len(ax.images) == 6
    for tile, index in zip(ax.images, [1, 3, 2, 5, 0, 4], strict=True):
        expected = images[index].permute(1, 2, 0).float().numpy() / 255
        np.testing.assert_allclose(tile.get_array(), expected)
        assert CLASSES[int(labels[index])] == CLASSES[[1, 3, 2, 5, 0, 4].index(index) // 2]
    assert "32" not in suptitle(fig) and "4×4 pixels" in suptitle(fig)


def test_image_grid_titles_each_image_and_draws_one_channel_in_grey():
    images = torch.rand(5, 1, 6, 6)
    fig = plot.image_grid(images, [0, 1, 2, 1, 0], CLASSES, ncols=3, title="Fashion")
    ax = fig.axes[0]
    assert texts(fig) == ["plane", "car", "bird", "car", "plane"]
    assert suptitle(fig).startswith("Fashion")
    assert ax.images[3].get_array().shape == (6, 6)
    assert ax.images[3].get_cmap().name == "gray"
    np.testing.assert_allclose(ax.images[3].get_array(), images[3, 0].numpy())


def test_image_grid_rejects_labels_that_do_not_match_the_images():
    # with one label too many, every title would still be drawn, under the wrong image
    with pytest.raises(ValueError, match="labels has 3 values but images has 2"):
        plot.image_grid(torch.zeros(2, 3, 8, 8), [0, 1, 2], CLASSES)


def test_augmentation_puts_each_augmented_image_under_its_original():
    before = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    raw = torch.rand(4, 3, 5, 5)
    normalized = (raw - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    fig = plot.augmentation(before, normalized, mean=mean, std=std)
    ax = fig.axes[0]
    assert texts(fig) == ["original", "augmented"]
    assert len(ax.images) == 8
    np.testing.assert_allclose(ax.images[1].get_array(), before[1].permute(1, 2, 0) / 255)
    np.testing.assert_allclose(ax.images[5].get_array(), raw[1].permute(1, 2, 0), atol=1e-6)
    assert "5×5 pixels" in suptitle(fig)
    two = plot.augmentation(before, [raw, raw])
    assert texts(two) == ["original", "augmented 1", "augmented 2"]
    with pytest.raises(ValueError, match="after has shape"):
        plot.augmentation(before, raw[:3])  # the rows would wrap: not under their originals


def test_feature_maps_show_the_first_channels_of_each_stage_with_its_shape():
    maps = {"stem": torch.randn(16, 8, 8), "layer1": torch.randn(1, 4, 4, 4)}
    fig = plot.feature_maps(maps, channels=6)
    assert texts(fig) == ["stem\n16×8×8", "layer1\n4×4×4"]
    assert len(fig.axes[0].images) == 6 + 4  # layer1 has only 4 channels
    first = np.asarray(fig.axes[0].images[0].get_array())
    assert first.min() == pytest.approx(0.0) and first.max() == pytest.approx(1.0)
    assert "C×H×W" in suptitle(fig)


# --------------------------------------------------------------------------- measurements


def test_gradient_norms_go_from_input_to_output_on_a_log_axis():
    norms = {"plain": [1e-4, 1e-2, 1.0], "resnet": [0.5, 0.6, 0.7]}
    fig = plot.gradient_norms(norms)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), norms["resnet"])
    assert ax.get_yscale() == "log"
    assert "input → output" in ax.get_xlabel() and ax.get_ylabel() == "gradient norm"
    assert ax.get_title()
    with pytest.raises(ValueError, match=r"norms\['plain'\] has a value <= 0"):
        plot.gradient_norms({"plain": [0.0, 1.0]})


def test_gradient_norms_take_named_blocks_and_mark_where_stages_start():
    named = [("layer1.0", 0.1), ("layer1.1", 0.2), ("layer2.0", 0.3), ("layer3.0", 0.4)]
    ax = plot.gradient_norms({"resnet": named}).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.2, 0.3, 0.4])
    starts = [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "stage start"]
    assert starts == [2.5, 3.5]  # between block 2 and 3, and between 3 and 4


def test_layer_responses_draw_each_net_in_layer_order_and_sorted_by_size():
    stds = {
        "plain": [("layer1.0.bn1", 1.0), ("layer1.0.bn2", 3.0), ("layer2.0.bn1", 2.0)],
        "resnet": [("layer1.0.bn1", 0.5), ("layer1.0.bn2", 0.2), ("layer2.0.bn1", 0.4)],
    }
    by_layer, by_size = plot.layer_responses(stds).axes
    np.testing.assert_allclose(by_layer.lines[0].get_ydata(), [1.0, 3.0, 2.0])
    np.testing.assert_allclose(by_size.lines[0].get_ydata(), [3.0, 2.0, 1.0])
    np.testing.assert_allclose(by_size.lines[1].get_ydata(), [0.5, 0.4, 0.2])
    stage_lines = [line for line in by_layer.lines if line.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in stage_lines] == [2.5]


def test_layer_responses_give_each_depth_its_own_column_and_stage_lines():
    short = [(f"layer{s}.0.bn{k}", 1.0) for s in (1, 2) for k in (1, 2)]  # 4 layers
    deep = [(f"layer{s}.{b}.bn{k}", 0.5) for s in (1, 2) for b in (0, 1) for k in (1, 2)]
    fig = plot.layer_responses({"plain-4": short, "resnet-4": short, "resnet-8": deep})
    assert len(fig.axes) == 4  # two columns (4 and 8 layers), each in layer order and sorted
    top = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in top] == ["4 layers measured", "8 layers measured"]
    assert [line.get_label() for line in top[0].lines if line.get_linestyle() != ":"] == [
        "plain-4",
        "resnet-4",
    ]
    for ax, start in zip(top, (2.5, 4.5)):  # each column's own stage boundary, named
        stage_lines = [line for line in ax.lines if line.get_linestyle() == ":"]
        assert [line.get_xdata()[0] for line in stage_lines] == [start]
        assert [text.get_text() for text in ax.texts] == ["stage 2"]
    # one colour per network across the columns: resnet-8 does not reuse plain-4's
    colours = {line.get_label(): line.get_color() for ax in top for line in ax.lines
               if line.get_linestyle() != ":"}  # fmt: skip
    assert len(set(colours.values())) == 3


def test_bars_show_the_values_and_the_published_reference():
    fig = plot.bars(
        {"A": 0.27, "B": 0.28},
        ylabel="parameters (millions)",
        title="Shortcuts",
        reference={"B": 0.3},
    )
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [0.27, 0.28]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.3])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1])
    assert ax.get_ylabel() == "parameters (millions)" and ax.get_title() == "Shortcuts"
    with pytest.raises(ValueError, match=r"reference has names \['C'\]"):
        plot.bars({"A": 1.0}, ylabel="x (s)", title="t", reference={"C": 1.0})


def test_cost_bars_convert_counts_to_millions_and_gmac():
    # parameters and multiply-adds of torchvision's resnet18/50; the paper's Table 1 FLOPs
    fig = plot.cost_bars(
        ["resnet18", "resnet50"],
        [11_689_512, 25_557_032],
        [1.814e9, 4.089e9],
        reference_macs={"resnet18": 1.8e9, "resnet50": 3.8e9},
    )
    params, macs = fig.axes
    np.testing.assert_allclose([p.get_height() for p in params.patches], [11.689512, 25.557032])
    np.testing.assert_allclose([p.get_height() for p in macs.patches], [1.814, 4.089])
    np.testing.assert_allclose(macs.lines[0].get_ydata(), [1.8, 3.8])
    assert params.get_ylabel() == "parameters (millions)"
    assert macs.get_ylabel() == "multiply-adds (GMAC)"
    assert suptitle(fig) == "Model cost"
    with pytest.raises(ValueError, match="reference_params"):
        plot.cost_bars(["a"], [1], [1], reference_params={"b": 1})


def test_confusion_counts_match_a_hand_computed_case():
    targets = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 0, 2]
    expected = [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # row = true, column = predicted
    counts = measure.confusion_counts(targets, predictions, 3)
    assert counts.dtype == torch.int64
    assert counts.tolist() == expected


def test_confusion_counts_match_a_bincount_oracle():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 7, (1000,), generator=g)
    predictions = torch.randint(0, 7, (1000,), generator=g)
    oracle = torch.bincount(targets * 7 + predictions, minlength=49).view(7, 7)
    assert torch.equal(measure.confusion_counts(targets, predictions, 7), oracle)


@pytest.mark.parametrize(
    ("targets", "predictions", "message"),
    [
        ([0, 1], [0], "predictions has 1 entries but targets has 2"),
        ([0, 3], [0, 1], r"targets must be class indices in \[0, 3\)"),
        ([0, 1], [-1, 1], "predictions must be class indices"),
    ],
)
def test_confusion_counts_reject_bad_inputs(targets, predictions, message):
    with pytest.raises(ValueError, match=message):
        measure.confusion_counts(targets, predictions, 3)


def test_confusion_matrix_shows_row_percentages_and_the_accuracy():
    targets = [0, 0, 1, 2, 2, 2, 2, 1]
    predictions = [0, 1, 1, 2, 0, 2, 2, 1]
    fig = plot.confusion_matrix(targets, predictions, CLASSES)
    ax = fig.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown, [[50, 50, 0], [0, 100, 0], [25, 0, 75]])
    assert [t.get_text() for t in ax.texts] == ["50", "50", "0", "0", "100", "0", "25", "0", "75"]
    assert "accuracy 75.0%" in ax.get_title()  # 6 of 8 on the diagonal
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert fig.axes[1].get_ylabel() == "% of true class"  # the colour bar
    counts = plot.confusion_matrix(targets, predictions, CLASSES, normalize=False)
    np.testing.assert_array_equal(
        counts.axes[0].images[0].get_array(), [[1, 1, 0], [0, 2, 0], [1, 0, 3]]
    )


def test_shape_trace_plots_channels_and_resolution_per_stage():
    trace = [
        ("input", (1, 3, 32, 32)),
        ("stem", (1, 16, 32, 32)),
        ("layer2", (32, 16, 16)),
        ("fc", (1, 10)),
    ]
    fig = plot.shape_trace(trace)
    channels, resolution = fig.axes
    np.testing.assert_array_equal(channels.lines[0].get_ydata(), [3, 16, 32])  # feature maps
    # the pooled vector is no channel count: a marker of its own, not joined to the maps' line
    np.testing.assert_array_equal(channels.lines[1].get_ydata(), [10])
    assert channels.lines[1].get_linestyle() == "None"
    np.testing.assert_array_equal(resolution.lines[0].get_ydata(), [32, 32, 16, math.nan])
    assert "no grid" in [t.get_text() for t in resolution.texts]
    assert [t.get_text() for t in resolution.get_xticklabels()] == ["input", "stem", "layer2", "fc"]
    assert channels.get_ylabel() == "channels" and "(pixels)" in resolution.get_ylabel()
    assert resolution.get_xlabel() == "stage" and suptitle(fig)
    assert "16×16" in [t.get_text() for t in resolution.texts]
    assert "10 values" in [t.get_text() for t in channels.texts]
    legend = [t.get_text() for t in channels.get_legend().get_texts()]
    assert legend == ["feature map: channels", "vector (no grid): length"]


# --------------------------------------------------------------------------- results


def test_error_vs_depth_in_percent_with_the_published_numbers_dotted():
    depths = [20, 32, 44, 56]
    errors = {"plain": [0.09, 0.10, 0.11, 0.12], "ResNet": [0.09, 0.08, 0.075, 0.07]}
    published = {"ResNet": [0.0875, 0.0751, 0.0717, 0.0697]}  # He et al. 2016, Table 6
    fig = plot.error_vs_depth(depths, errors, reference=published)
    ax = fig.axes[0]
    plain, resnet, paper = ax.lines
    np.testing.assert_allclose(plain.get_ydata(), [9, 10, 11, 12])
    np.testing.assert_allclose(paper.get_ydata(), [8.75, 7.51, 7.17, 6.97])
    np.testing.assert_array_equal(resnet.get_xdata(), depths)
    assert paper.get_linestyle() == ":" and paper.get_color() == resnet.get_color()
    assert "(%)" in ax.get_ylabel() and "depth" in ax.get_xlabel() and ax.get_title()
    with pytest.raises(ValueError, match="divide percentages by 100"):
        plot.error_vs_depth(depths, {"plain": [9.0, 10.0, 11.0, 12.0]})


def test_error_vs_depth_draws_the_spread_as_error_bars():
    fig = plot.error_vs_depth([20, 56], {"measured": [0.2, 0.17]},
                              spread={"measured": [0.012, 0.011]})  # fmt: skip
    ax = fig.axes[0]
    (bars,) = ax.collections  # one LineCollection of vertical bars
    ends = np.array([segment[:, 1] for segment in bars.get_segments()])
    np.testing.assert_allclose(ends, [[18.8, 21.2], [15.9, 18.1]])
    with pytest.raises(ValueError, match="spread has names"):
        plot.error_vs_depth([20], {"a": [0.1]}, spread={"b": [0.01]})


def test_error_vs_labels_draws_the_median_of_the_seeds_in_a_band_from_lowest_to_highest():
    fig = plot.error_vs_labels(
        [10, 100, 1000], {"fine-tune": [[0.5, 0.3, 0.4], [0.2, 0.25, 0.3], [0.1, 0.1, 0.1]]},
        chance=0.8,
    )  # fmt: skip
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [40, 25, 10])  # medians, by hand
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(10) and band.max() == pytest.approx(50)
    assert {30, 20, 50} <= {round(v) for v in band}  # lowest and highest seed at each budget
    assert ax.get_xscale() == "log" and ax.get_ylim() == (0, 100)
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(80)  # the chance line
    assert "(%)" in ax.get_ylabel() and "per class" in ax.get_xlabel() and ax.get_title()
    with pytest.raises(ValueError, match="has 1 budgets, not 2"):
        plot.error_vs_labels([10, 100], {"a": [[0.5]]})
    with pytest.raises(ValueError, match="labels_per_class has a value <= 0"):
        plot.error_vs_labels([0, 10], {"a": [[0.5], [0.6]]})
    with pytest.raises(ValueError, match="divide percentages by 100"):
        plot.error_vs_labels([10], {"a": [[50]]})


# --------------------------------------------------------------------------- diagram


@pytest.mark.parametrize(
    ("kind", "boxes"),
    [
        ("basic", ["3×3 conv, 64", "3×3 conv, 64"]),
        ("bottleneck", ["1×1 conv, 64", "3×3 conv, 64", "1×1 conv, 256"]),  # Fig. 5, right
        ("plain", ["3×3 conv, 64", "3×3 conv, 64"]),
    ],
)
def test_residual_block_diagram_draws_the_layers_and_the_shortcut(kind, boxes):
    fig = plot.residual_block_diagram(kind)
    ax = fig.axes[0]
    gids = [p.get_gid() for p in ax.patches]
    words = texts(fig)
    assert gids.count("weight layer") == len(boxes)
    assert [w for w in words if "conv" in w] == boxes
    assert ax.get_title()
    if kind == "plain":
        assert "shortcut" not in gids and "addition" not in gids
        assert "H(x)" in words and "F(x) + x" not in words
    else:
        assert gids.count("shortcut") == 1 and gids.count("addition") == 1
        assert {"x", "F(x)", "F(x) + x", "x\nidentity"} <= set(words)
    assert words.count("relu") == len(boxes)  # between the layers, and after the output


def test_residual_block_diagram_rejects_an_unknown_kind():
    with pytest.raises(
        ValueError, match="kind must be 'basic', 'bottleneck' or 'plain', got 'wide'"
    ):
        plot.residual_block_diagram("wide")


# --------------------------------------------------------------------------- every figure

SINGLE_AXIS = {
    "training_curves": lambda ax: plot.training_curves({"a": history([0.5], [0.6])}, ax=ax),
    "lr_schedule": lambda ax: plot.lr_schedule({"a": [0.1, 0.01]}, ax=ax),
    "gradient_norms": lambda ax: plot.gradient_norms({"a": [1.0, 2.0]}, ax=ax),
    "bars": lambda ax: plot.bars({"a": 1.0}, ylabel="time (s)", title="t", ax=ax),
    "confusion_matrix": lambda ax: plot.confusion_matrix([0, 1], [0, 0], ["a", "b"], ax=ax),
    "error_vs_depth": lambda ax: plot.error_vs_depth([20], {"a": [0.1]}, ax=ax),
    "error_vs_labels": lambda ax: plot.error_vs_labels([10], {"a": [[0.5]]}, ax=ax),
    "residual_block_diagram": lambda ax: plot.residual_block_diagram(ax=ax),
}


@pytest.mark.parametrize("name", SINGLE_AXIS)
def test_single_axis_figures_draw_into_a_given_axis(name):
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert SINGLE_AXIS[name](right) is fig
    assert right.get_title() and not left.get_title()


def test_figures_render_to_png():
    # drawing runs the layout and the patches' paths, which building the figure does not
    figures = [
        plot.training_curves({"a": [history([0.5, 0.4], [0.6, 0.5])] * 2}),
        plot.image_grid(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), [0, 1, 2], CLASSES),
        plot.residual_block_diagram("bottleneck"),
    ]
    for fig in figures:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=30)
        assert buffer.getvalue().startswith(b"\x89PNG")
