"""What only a CUDA device can test: mixed precision, channels_last and compile on the GPU.

Deselected by default (pyproject's `-m 'not cuda'`); `make test-gpu` runs them with `-m cuda`.
Each compares the GPU path with an independent fp32 reference on the same weights.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision

import resnet_tutorial as rt
from resnet_tutorial.train import pick_precision

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail("the cuda tests need a CUDA device: run them with `make test-gpu` on a GPU")


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return images, labels


def test_auto_precision_on_cuda_is_mixed_and_channels_last():
    precision, channels_last = pick_precision("cuda")
    assert precision == ("bf16" if torch.cuda.get_device_capability()[0] >= 8 else "fp16")
    assert channels_last


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_channels_last_resnet50_agrees_with_fp32(dtype):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50().cuda().eval()
    ours = rt.resnet50().cuda().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours = ours.to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 224, 224, device="cuda")
    with torch.no_grad():
        expected = reference(x)
        with torch.autocast("cuda", dtype):
            got = ours(x.contiguous(memory_format=torch.channels_last))
    assert got.dtype == dtype
    # Mixed precision changes the logits by a few percent of their spread, not their ranking.
    assert (got.float() - expected).abs().max() < 0.05 * expected.std()
    assert (got.float().argmax(1) == expected.argmax(1)).float().mean() >= 0.75


def test_compiled_model_matches_eager():
    torch.manual_seed(0)
    model = rt.cifar_resnet(20).cuda().eval()
    compiled = torch.compile(copy.deepcopy(model))
    x = torch.randn(32, 3, 32, 32, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fit_on_cuda_overfits_a_batch_in_mixed_precision(precision):
    images, labels = _batch(64)
    model = rt.cifar_resnet(20)
    config = rt.TrainConfig(
        epochs=30, batch_size=64, lr=0.05, weight_decay=0, augment=False, device="cuda",
        precision=precision, progress=False,
    )  # fmt: skip
    history = rt.fit(model, (images, labels), (images, labels), config)
    assert next(model.parameters()).device.type == "cuda"
    assert history.train_error[-1] < 0.2 < history.train_error[0]


def test_fit_with_compile_trains_like_eager():
    images, labels = _batch(64)
    errors = []
    for compile_ in (False, True):
        config = rt.TrainConfig(
            epochs=3, batch_size=32, lr=0.05, augment=False, device="cuda", precision="fp32",
            channels_last=False, compile=compile_, progress=False,
        )  # fmt: skip
        errors.append(rt.fit(rt.cifar_resnet(20), (images, labels), (images, labels), config))
    eager, compiled = errors
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-2)


def test_evaluate_on_cuda_equals_evaluate_on_cpu():
    images, labels = _batch(200)
    model = rt.cifar_resnet(20).eval()
    on_cpu = rt.evaluate(model, (images, labels), device="cpu")
    on_gpu = rt.evaluate(model.cuda(), (images, labels), device="cuda")
    assert on_gpu[1] == pytest.approx(on_cpu[1], abs=1 / 200)
    assert on_gpu[0] == pytest.approx(on_cpu[0], rel=1e-3)
