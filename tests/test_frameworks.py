"""resnet_tutorial.frameworks: the Keras ports against our torch models, the Lightning loop
against rt.fit and a hand-written loop, the appendix's exercise check
(`rt.exercises.check_keras_basic_block`) against right and wrong blocks. (The solutions page
runs in tests/test_solutions.py, with the chapters' pages.)

Oracles: torchvision's models and documented counts, our torch models' outputs (the Keras code
is a separate implementation), convolutions and BatchNorm updates written out by hand, a
training loop written here with torch.optim, and counts by hand. Keras runs on its torch
backend, on the CPU. What Keras, Lightning and torch do by themselves (Keras 3's SGD, the errors
of Lightning 1's arguments) is not tested here: the appendix shows it, and nbval checks it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial import frameworks

# the optional extra resnet_tutorial[frameworks]: skipped where it is not installed (the
# oldest-torch run); Keras reads its backend when first imported
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")
pytest.importorskip("keras", reason="needs the extra resnet_tutorial[frameworks]")
pytest.importorskip("pytorch_lightning", reason="needs resnet_tutorial[frameworks]")
pytest.importorskip("torchmetrics", reason="needs resnet_tutorial[frameworks]")
keras = frameworks.import_keras()

ROOT = Path(__file__).resolve().parent.parent


def relative_gap(output: torch.Tensor, expected: torch.Tensor) -> float:
    return float((output - expected).abs().max() / expected.abs().max())


# --- building and porting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "torchvision_model", "documented"),
    [
        (18, torchvision.models.resnet18, 11_689_512),
        (34, torchvision.models.resnet34, 21_797_672),
        (50, torchvision.models.resnet50, 25_557_032),
    ],
)
def test_keras_resnet_has_torchvisions_parameter_count(depth, torchvision_model, documented):
    trainable, total = frameworks.keras_parameters(frameworks.keras_resnet(depth))
    with torch.device("meta"):  # shapes only: counting needs no weights
        reference = torchvision_model()
    assert trainable == sum(p.numel() for p in reference.parameters()) == documented
    # Keras also counts BN's moving mean and variance, which torch keeps as buffers
    bn_channels = sum(m.num_features for m in reference.modules() if isinstance(m, nn.BatchNorm2d))
    assert total - trainable == 2 * bn_channels


def test_keras_resnet18_computes_torchvisions_outputs():
    reference = rt.measure.randomize_batchnorm(torchvision.models.resnet18(), seed=3).eval()
    ours = rt.resnet18().eval()
    ours.load_state_dict(reference.state_dict())
    ported = frameworks.keras_resnet(18)
    copied = frameworks.port_weights(ours, ported)
    assert copied == 20 + 4 * 20 + 2  # 1 + 16 + 3 convolutions, 20 BNs (4 tensors each), fc
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
    assert relative_gap(frameworks.keras_logits(ported, x), expected) < 1e-5


def test_keras_resnet50_computes_our_outputs():
    ours = rt.measure.randomize_batchnorm(rt.resnet50(), seed=5).eval()
    ported = frameworks.keras_resnet(50)
    frameworks.port_weights(ours, ported)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ours(x)
    assert relative_gap(frameworks.keras_logits(ported, x), expected) < 1e-5


def test_keras_cifar_resnet_with_trained_weights_gives_the_same_predictions():
    ours = rt.load_pretrained_cifar(20)
    mean, std = ours.normalization
    test = rt.data.cifar10("test", per_class=5)
    ported = frameworks.keras_cifar_resnet(20)
    assert frameworks.keras_parameters(ported)[0] == 269_722  # the paper's 0.27M
    frameworks.port_weights(ours, ported)
    x = rt.data.normalize(test.images, mean, std)
    with torch.no_grad():
        expected = ours(x)
    logits = frameworks.keras_logits(ported, x)
    assert relative_gap(logits, expected) < 1e-5
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    # a Keras model is an nn.Module on the torch backend: rt.evaluate takes it as it is
    assert rt.evaluate(ported, test, mean=mean, std=std) == pytest.approx(
        rt.evaluate(ours, test, mean=mean, std=std), rel=1e-5
    )


def test_option_a_in_keras_is_zero_padding_split_evenly():
    inputs = keras.Input((16, 8, 8))
    outputs = frameworks.keras_shortcut(inputs, "A", 16, 32, 2, "block")
    model = keras.Model(inputs, outputs)
    x = torch.randn(2, 16, 8, 8)
    by_hand = torch.zeros(2, 32, 4, 4)
    by_hand[:, 8:24] = x[:, :, ::2, ::2]
    torch.testing.assert_close(model(x), by_hand, rtol=0, atol=0)


def test_port_is_strict_about_missing_and_extra_layers():
    # one block per stage, so the networks are small: the code path of ResNet-34 with a stage
    # one block short (3, 4, 5, 3) is the same
    one_each = (1, 1, 1, 1)
    with pytest.raises(
        ValueError, match=r"layer3\.1\.conv1 .* no Keras layer named 'layer3_1_conv1'"
    ):
        frameworks.port_weights(
            rt.ResNet(rt.BasicBlock, (1, 1, 2, 1)), frameworks.keras_resnet(18, layers=one_each)
        )
    # our network one block short: the Keras network's last block (2 convolutions, 2 BNs) has
    # no counterpart
    with pytest.raises(ValueError, match=r"4 Keras layers with weights have no counterpart"):
        frameworks.port_weights(
            rt.ResNet(rt.BasicBlock, one_each), frameworks.keras_resnet(18, layers=(1, 1, 1, 2))
        )


def test_port_rejects_a_layer_of_the_wrong_shape():
    ours = rt.ResNet(rt.BasicBlock, (1, 1, 1, 1), num_classes=10)
    with pytest.raises(ValueError, match=r"our fc gives a tensor of shape \(512, 10\)"):
        frameworks.port_weights(ours, frameworks.keras_resnet(18, layers=(1, 1, 1, 1)))


# --- the mistakes --------------------------------------------------------------------------------


def test_a_bias_before_batchnorm_adds_one_parameter_per_channel_and_gets_no_gradient():
    ours = rt.resnet18()
    biased = frameworks.keras_resnet(18, options=frameworks.KerasOptions(conv_bias=True))
    extra = frameworks.keras_parameters(biased)[0] - rt.count_parameters(ours)
    assert extra == sum(m.out_channels for m in ours.modules() if isinstance(m, nn.Conv2d))
    frameworks.port_weights(ours.eval(), biased)  # the biases get zeros: the same function
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ours(x)
    assert relative_gap(frameworks.keras_logits(biased, x), expected) < 1e-5
    for layer in biased.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(torch.randn(layer.bias.shape))
    loss = nn.functional.cross_entropy(biased(x, training=True), torch.tensor([3, 7]))
    loss.backward()
    convs = [layer for layer in biased.layers if isinstance(layer, keras.layers.Conv2D)]
    bias_gradient = max(layer.bias.value.grad.abs().max().item() for layer in convs)
    kernel_gradient = max(layer.kernel.value.grad.abs().max().item() for layer in convs)
    assert bias_gradient < 1e-5 * kernel_gradient


def test_keras_same_padding_differs_from_torch_at_stride_two_only():
    conv = nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    # by hand: at stride 2 on an even size, 'same' pads one row and column, at the bottom and right
    bottom_right = nn.functional.conv2d(nn.functional.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    outputs = {}
    for padding in ("explicit", "same"):
        inputs = keras.Input((4, 8, 8))
        options = frameworks.KerasOptions(padding=padding)
        model = keras.Model(inputs, frameworks.keras_conv(inputs, 4, 3, 2, "conv", options))
        model.get_layer("conv").kernel.assign(conv.weight.detach().permute(2, 3, 1, 0))
        with torch.no_grad():
            outputs[padding] = model(x)
    with torch.no_grad():
        torch.testing.assert_close(outputs["explicit"], conv(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(outputs["same"], bottom_right, rtol=1e-5, atol=1e-5)
        assert (bottom_right - conv(x)).abs().max() > 0.1  # the two paddings are told apart


def test_a_2x2_stem_pool_keeps_the_shape_at_224_and_loses_a_column_at_226():
    # one block per stage: only the stem is probed
    right = frameworks.keras_resnet(18, layers=(1, 1, 1, 1))
    wrong = frameworks.keras_resnet(
        18, layers=(1, 1, 1, 1), options=frameworks.KerasOptions(stem_pool="2x2")
    )
    stem = {}
    for name, model in (("right", right), ("wrong", wrong)):
        probe = keras.Model(model.inputs, model.get_layer("maxpool").output)
        stem[name] = [tuple(probe(torch.zeros(1, 3, s, s)).shape) for s in (224, 226)]
    assert stem["right"] == [(1, 64, 56, 56), (1, 64, 57, 57)]  # torch's 3×3/2 pad 1
    assert stem["wrong"] == [(1, 64, 56, 56), (1, 64, 56, 56)]


def test_keras_batchnorm_epsilon_is_not_ported_and_changes_the_output():
    ours = rt.measure.randomize_batchnorm(rt.resnet18(), seed=1).eval()
    with torch.no_grad():
        for module in ours.modules():  # small variances: where ε matters
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.mul_(1e-3)
    wrong = frameworks.keras_resnet(18, options=frameworks.KerasOptions(epsilon=1e-3))
    frameworks.port_weights(ours, wrong)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with_keras_epsilon = copy.deepcopy(ours)  # the oracle: our network with Keras' default ε
    for module in with_keras_epsilon.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
    with torch.no_grad():
        expected, with_epsilon = ours(x), with_keras_epsilon(x)
    logits = frameworks.keras_logits(wrong, x)
    assert relative_gap(logits, with_epsilon) < 1e-5  # the port copies tensors, not ε
    assert relative_gap(logits, expected) > 1e-2  # and here ε changes the logits


def test_keras_bn_keeps_torchs_running_mean_with_keras_biased_batch_variance():
    z = 1 + 2 * torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    inputs = keras.Input((3, 5, 5))
    model = keras.Model(inputs, frameworks.keras_bn(inputs, "bn"))
    model(z, training=True)
    layer = model.get_layer("bn")
    # by hand, torch's momentum 0.1 from the initial (0, 1): new = 0.9 · old + 0.1 · batch
    torch.testing.assert_close(layer.moving_mean.value.detach(), 0.1 * z.mean(dim=(0, 2, 3)))
    batch_variance = z.var(dim=(0, 2, 3), unbiased=False)  # Keras adds the biased one
    torch.testing.assert_close(layer.moving_variance.value.detach(), 0.9 + 0.1 * batch_variance)


# --- keras.applications ------------------------------------------------------------------------


def test_keras_applications_resnet50_is_ours_with_the_stride_on_the_1x1():
    with frameworks.keras_image_format("channels_first"):
        theirs = keras.applications.ResNet50(
            weights=None, input_shape=(3, 64, 64), classifier_activation=None
        )
    assert keras.config.image_data_format() == "channels_last"  # restored
    ours = rt.resnet50(stride_on="1x1")
    convs = sum(m.out_channels for m in ours.modules() if isinstance(m, nn.Conv2d))
    assert frameworks.keras_parameters(theirs)[0] == rt.count_parameters(ours) + convs
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = rt.measure.randomize_batchnorm(rt.resnet50(stride_on="1x1"), seed=2).eval()
    frameworks.port_weights(model, theirs, name=frameworks.keras_applications_name)
    stride_on_3x3 = rt.resnet50().eval()  # the same weights, the stride on the 3×3
    stride_on_3x3.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected, elsewhere = model(x), stride_on_3x3(x)
    logits = frameworks.keras_logits(theirs, x)
    assert relative_gap(logits, expected) < 1e-4
    assert relative_gap(logits, elsewhere) > 1e-2  # the stride's place is what is compared


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("conv1", "conv1_conv"),
        ("bn1", "conv1_bn"),
        ("layer1.0.conv1", "conv2_block1_1_conv"),
        ("layer2.3.bn3", "conv3_block4_3_bn"),
        ("layer4.0.downsample.0", "conv5_block1_0_conv"),
        ("layer4.0.downsample.1", "conv5_block1_0_bn"),
        ("fc", "predictions"),
    ],
)
def test_keras_applications_name(key, name):
    assert frameworks.keras_applications_name(key) == name


# --- Lightning -----------------------------------------------------------------------------------


def hand_written_losses(model: nn.Module, train, config: rt.TrainConfig) -> list[float]:
    """The paper's SGD step by step with torch.optim, on the batches of rt.fit's loader."""
    loader = rt.data.DeviceLoader(
        train, config.batch_size, mean=config.mean, std=config.std, device="cpu",
        seed=config.seed, augment=config.augment,
    )  # fmt: skip
    steps = len(loader) * config.epochs
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    model.to(memory_format=torch.channels_last).train()
    losses = []
    for epoch in range(1, config.epochs + 1):
        loader.set_epoch(epoch)
        for x, y in loader:
            step = len(losses)
            for group in optimizer.param_groups:  # ÷10 at 50 % and 75 % of the steps
                group["lr"] = config.lr * 0.1 ** ((step >= steps // 2) + (step >= steps * 3 // 4))
            loss = nn.functional.cross_entropy(
                model(x.contiguous(memory_format=torch.channels_last)), y
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def three_runs():
    train = rt.data.cifar10("train", per_class=4)  # 40 images: steps of 16, 16 and 8 per epoch
    test = rt.data.cifar10("test", per_class=1)
    config = rt.TrainConfig(
        epochs=2, batch_size=16, augment=False, precision="fp32", device="cpu", lr=0.05
    )
    torch.manual_seed(0)
    start = rt.cifar_resnet(20)
    history, fit_losses = frameworks.fit_step_losses(copy.deepcopy(start), train, test, config)
    module = frameworks.lightning_fit(copy.deepcopy(start), train, config)
    by_hand = hand_written_losses(copy.deepcopy(start), train, config)
    return history, fit_losses, module, by_hand


def test_lightning_and_rt_fit_and_a_hand_written_loop_give_the_same_losses(three_runs):
    history, fit_losses, module, by_hand = three_runs
    assert len(by_hand) == len(fit_losses) == len(module.step_losses) == 6
    assert fit_losses == pytest.approx(by_hand, abs=1e-5)
    assert module.step_losses == pytest.approx(by_hand, abs=1e-5)


def test_step_losses_average_to_rt_fits_epoch_losses(three_runs):
    history, fit_losses, module, _ = three_runs
    sizes = [16, 16, 8]  # 40 images in batches of 16
    for epoch in range(2):
        losses = fit_losses[3 * epoch : 3 * epoch + 3]
        mean = sum(loss * n for loss, n in zip(losses, sizes)) / 40
        assert mean == pytest.approx(history.train_loss[epoch], abs=1e-5)
    assert module.epoch_errors == pytest.approx(history.train_error, abs=1e-6)


def test_lightning_sees_rt_fits_augmented_batches_too():
    train = rt.data.cifar10("train", per_class=4)  # 40 images: 2 steps of 20 per epoch
    test = rt.data.cifar10("test", per_class=1)
    config = rt.TrainConfig(epochs=2, batch_size=20, augment=True, precision="fp32", device="cpu")
    torch.manual_seed(1)
    start = rt.cifar_resnet(20)
    _, fit_losses = frameworks.fit_step_losses(copy.deepcopy(start), train, test, config)
    module = frameworks.lightning_fit(copy.deepcopy(start), train, config)
    by_hand = hand_written_losses(copy.deepcopy(start), train, config)
    unaugmented = hand_written_losses(
        copy.deepcopy(start), train, dataclasses.replace(config, augment=False)
    )
    assert len(module.step_losses) == len(by_hand) == 4
    assert fit_losses == pytest.approx(by_hand, abs=1e-5)
    assert module.step_losses == pytest.approx(by_hand, abs=1e-5)
    # the control: without the crops and flips the losses differ, so the batches above were
    # the augmented ones
    assert max(abs(a - b) for a, b in zip(unaugmented, by_hand)) > 1e-3


def test_lightning_fit_respects_the_step_cap(monkeypatch):
    monkeypatch.setenv("RESNET_TUTORIAL_MAX_STEPS", "2")
    train = rt.data.cifar10("train", per_class=8)
    config = rt.TrainConfig(epochs=3, batch_size=16, augment=False, precision="fp32", device="cpu")
    with pytest.warns(UserWarning, match="RESNET_TUTORIAL_MAX_STEPS"):
        module = frameworks.lightning_fit(rt.cifar_resnet(20), train, config)
    assert len(module.step_losses) == 2  # as rt.fit: 2 epochs of 1 step


# --- the exercise checker ------------------------------------------------------------------------


def learner_block(
    padding="explicit", bias=False, epsilon=1e-5, momentum=0.9, axis=1, final_relu=True,
    project=True, names=("conv1", "bn1", "conv2", "bn2"),
):  # fmt: skip
    """A reader's Keras basic block, written without the package; the options are mistakes."""

    def block(x, in_channels, channels, stride):
        layers = keras.layers

        def conv(x, filters, kernel_size, stride, name):
            if kernel_size > 1 and padding == "explicit":
                x = layers.ZeroPadding2D(kernel_size // 2, data_format="channels_first")(x)
            return layers.Conv2D(
                filters, kernel_size, strides=stride, use_bias=bias,
                padding="valid" if padding == "explicit" else "same",
                data_format="channels_first", name=name,
            )(x)  # fmt: skip

        def bn(x, name):
            return layers.BatchNormalization(
                axis=axis, epsilon=epsilon, momentum=momentum, name=name
            )(x)

        out = layers.ReLU()(bn(conv(x, channels, 3, stride, names[0]), names[1]))
        out = bn(conv(out, channels, 3, 1, names[2]), names[3])
        shortcut = x
        if project and (stride != 1 or in_channels != channels):
            shortcut = bn(conv(x, channels, 1, stride, "downsample_0"), "downsample_1")
        elif stride != 1 or in_channels != channels:  # no projection: subsample and pad
            shortcut = keras.ops.pad(x[:, :, ::stride, ::stride], [[0, 0], [8, 8], [0, 0], [0, 0]])
        out = layers.Add()([out, shortcut])
        return layers.ReLU()(out) if final_relu else out

    return block


def test_check_keras_basic_block_passes_a_right_block(capsys):
    rt.exercises.check_keras_basic_block(learner_block())
    out = capsys.readouterr().out
    assert out.startswith("✓ ") and out.count("\n") == 1


def test_check_keras_basic_block_asks_for_the_bare_names():
    def block(x, in_channels, channels, stride):
        # the package's block prefixes its layers' names; the exercise asks for the bare names
        return frameworks.keras_basic_block(x, in_channels, channels, stride, name="b")

    with pytest.raises(AssertionError, match=r"the layers with weights are \['b_bn1'"):
        rt.exercises.check_keras_basic_block(block)


@pytest.mark.parametrize(
    ("mistake", "message", "hint"),
    [
        (dict(padding="same"), r"\['conv1'\] use padding='same' at stride 2", "bottom and right"),
        (dict(bias=True), "conv1 has a bias", "bias by default"),
        (dict(epsilon=1e-3), "bn1 has epsilon=0.001", "1e-5"),
        (dict(momentum=0.99), "bn1 has momentum=0.99", "old average"),
        (dict(axis=-1), "bn1 normalises axis -1", "last axis"),
        (dict(final_relu=False), "some are negative", "after the addition"),
        (dict(project=False), "expected .*'downsample_0'", "'downsample_0'"),
        (dict(names=("c1", "b1", "c2", "b2")), r"are \['b1', 'b2', 'c1', 'c2'\]", "name='conv1'"),
    ],
)
def test_check_keras_basic_block_names_each_mistake(mistake, message, hint):
    with pytest.raises(AssertionError, match=message) as info:
        rt.exercises.check_keras_basic_block(learner_block(**mistake))
    assert "\nHint: " in str(info.value) and hint in str(info.value).split("\nHint: ")[1]


def test_check_keras_basic_block_reports_an_error_in_the_learners_code():
    def broken(x, in_channels, channels, stride):
        raise NameError("name 'layers' is not defined")

    with pytest.raises(AssertionError, match="raised NameError: name 'layers' is not defined"):
        rt.exercises.check_keras_basic_block(broken)


# --- settings, errors, imports -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(stem_pool="3x2"), "stem_pool must be '3x3' or '2x2', got '3x2'"),
        (dict(padding="valid"), "padding must be 'explicit' or 'same', got 'valid'"),
        (dict(epsilon=0), "epsilon must be a number > 0, got 0"),
        (dict(momentum=1.0), r"momentum must be a number in \[0, 1\), got 1.0"),
    ],
)
def test_keras_options_reject_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        frameworks.KerasOptions(**options)


def test_builders_reject_bad_depths_and_tables():
    with pytest.raises(ValueError, match=r"depth must be one of \[18, 34, 50, 101, 152\]"):
        frameworks.keras_resnet(20)
    with pytest.raises(ValueError, match=r"layers needs one entry per stage \(4\)"):
        frameworks.keras_resnet(34, layers=(3, 4, 6))
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2"):
        frameworks.keras_cifar_resnet(21)
    with pytest.raises(ValueError, match="shortcut must be 'A', 'B', 'C' or None in Keras"):
        frameworks.keras_shortcut(keras.Input((4, 8, 8)), "D", 4, 8, 2, "x")


def test_importing_the_package_imports_neither_keras_nor_lightning():
    code = (
        "import sys, resnet_tutorial, resnet_tutorial.frameworks, resnet_tutorial.exercises\n"
        "loaded = [m for m in ('keras', 'pytorch_lightning', 'torchmetrics') if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
