"""Transfer learning (chapter 6): ImageNet weights, parts, freezing, new heads, per-part lrs.

The oracles: torchvision's own models and weights enums (a torchvision state_dict goes through
exactly the code path of the ImageNet download, offline), requires_grad and BN modes written
out by hand, and parameter sets built by hand from parameter names.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import urllib.error

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import resnet_tutorial as rt
from resnet_tutorial import transfer
from resnet_tutorial.train import TrainConfig, make_optimizer, make_scheduler, train_loader

TORCHVISION = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
               50: torchvision.models.resnet50}  # fmt: skip
WEIGHTS = {18: torchvision.models.ResNet18_Weights, 34: torchvision.models.ResNet34_Weights,
           50: torchvision.models.ResNet50_Weights}  # fmt: skip


def _random_torchvision(depth: int, seed: int = 0) -> nn.Module:
    """A torchvision ResNet with random weights and random BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = TORCHVISION[depth](weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture
def offline_download(monkeypatch):
    """Serve a random torchvision state_dict where torchvision's weights API downloads one."""
    calls = []

    def serve(model: nn.Module):
        def load_state_dict_from_url(url, *args, **kwargs):
            calls.append((url, kwargs))
            return model.state_dict()

        monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url",
                            load_state_dict_from_url)  # fmt: skip
        return calls

    return serve


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_imagenet_weights_load_strictly_and_give_torchvision_outputs(depth, offline_download):
    reference = _random_torchvision(depth)
    calls = offline_download(reference)
    ours, preprocess = rt.load_pretrained_imagenet(depth)
    weights = WEIGHTS[depth].DEFAULT
    assert calls == [(weights.url, {"progress": False, "check_hash": True})]
    assert not ours.training and isinstance(ours, rt.ResNet)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)
    # the weights' own preprocessing: torchvision's transform for these weights
    expected = weights.transforms()
    assert type(preprocess) is type(expected)
    for name in ("crop_size", "resize_size", "mean", "std", "interpolation", "antialias"):
        assert getattr(preprocess, name) == getattr(expected, name), name
    assert ours.normalization == (tuple(expected.mean), tuple(expected.std))
    assert ours.fc.out_features == len(weights.meta["categories"]) == 1000


def test_imagenet_weights_by_name_or_member(offline_download):
    calls = offline_download(_random_torchvision(18))
    rt.load_pretrained_imagenet(18, "IMAGENET1K_V1")
    rt.load_pretrained_imagenet(18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    assert [url for url, _ in calls] == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url] * 2


def test_imagenet_weights_old_and_new_resnet50_have_their_own_transforms(offline_download):
    offline_download(_random_torchvision(50))
    _, v1 = rt.load_pretrained_imagenet(50, "IMAGENET1K_V1")
    _, v2 = rt.load_pretrained_imagenet(50, "IMAGENET1K_V2")
    assert (v1.resize_size, v1.crop_size) == ([256], [224])  # torchvision's documentation
    assert (v2.resize_size, v2.crop_size) == ([232], [224])


def test_imagenet_load_is_strict(offline_download):
    state = _random_torchvision(18).state_dict()
    del state["layer4.1.bn2.running_var"]

    class Incomplete(nn.Module):
        def state_dict(self):
            return state

    offline_download(Incomplete())
    with pytest.raises(RuntimeError, match="Missing key.*layer4.1.bn2.running_var"):
        rt.load_pretrained_imagenet(18)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty torch.hub cache in tmp_path and no internet: every download fails at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def urlopen(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "urlopen", urlopen)
    return calls


def test_imagenet_download_fails_at_once_offline(no_network, tmp_path, capsys):
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    with pytest.raises(transfer.WeightsUnavailableError) as caught:
        rt.load_pretrained_imagenet(50)
    error = caught.value
    assert capsys.readouterr().out == ""  # progress=False: not even torch.hub's "Downloading"
    assert no_network == [weights.url]  # one try, no retry
    assert isinstance(error, OSError) and isinstance(error.__cause__, urllib.error.URLError)
    # the message says which weights, where they were looked for, and why the download failed
    expected_path = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    assert error.path == expected_path and error.url == weights.url
    for part in ("ResNet50_Weights.IMAGENET1K_V2", str(expected_path), weights.url,
                 "URLError", "Name or service not known"):  # fmt: skip
        assert part in str(error), part
    assert not any(tmp_path.rglob("*.pth"))  # no half-written file left behind


def test_imagenet_weights_in_the_cache_load_offline(no_network, tmp_path):
    # A file already in torch.hub's cache is all it takes: no download is tried (torch.hub
    # checks the hash of downloads only, so a random state_dict under the real name loads).
    reference = _random_torchvision(18)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[1])
    ours, _ = rt.load_pretrained_imagenet(18)
    assert no_network == []
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)


def test_cifar_checkpoint_download_fails_at_once_offline(no_network, tmp_path):
    with pytest.raises(transfer.WeightsUnavailableError, match="CIFAR-10 ResNet-32 weights"):
        rt.load_pretrained_cifar(32)
    assert len(no_network) == 1 and no_network[0].endswith("resnet32-d509ac18.th")
    assert not any(tmp_path.rglob("*.th"))


@pytest.mark.parametrize(("depth", "name"), [(50, "IMAGENET1K_V1"), (50, "IMAGENET1K_V2"),
                                             (18, "IMAGENET1K_V1")])  # fmt: skip
def test_resize_and_crop_then_normalize_is_the_weights_transform(depth, name):
    # The oracle: torchvision's own transform of the weights, on the same uint8 images.
    preprocess = WEIGHTS[depth][name].transforms()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
    resized = transfer.resize_and_crop(images, preprocess, batch_size=2)  # two batches
    assert resized.dtype == torch.uint8 and resized.shape == (3, 3, 224, 224)
    expected = preprocess(images)
    torch.testing.assert_close(rt.data.normalize(resized, preprocess.mean, preprocess.std),
                               expected, rtol=0, atol=1e-5)  # fmt: skip


def test_resize_and_crop_wants_uint8_batches():
    preprocess = WEIGHTS[18].DEFAULT.transforms()
    with pytest.raises(ValueError, match=r"uint8 \(N, C, H, W\), got torch.float32"):
        transfer.resize_and_crop(torch.rand(2, 3, 32, 32), preprocess)
    with pytest.raises(ValueError, match=r"of shape \(3, 32, 32\)"):
        transfer.resize_and_crop(torch.zeros(3, 32, 32, dtype=torch.uint8), preprocess)


@pytest.mark.parametrize(
    ("depth", "weights", "message"),
    [
        (101, "DEFAULT", r"depth must be one of \(18, 34, 50\), got 101"),
        (True, "DEFAULT", "depth must be one of"),
        (18, "IMAGENET1K_V9", r"one of 'IMAGENET1K_V1', 'DEFAULT'.*got 'IMAGENET1K_V9'"),
        (50, torchvision.models.ResNet18_Weights.DEFAULT, "members of ResNet50_Weights"),
    ],
)
def test_imagenet_bad_arguments(depth, weights, message):
    with pytest.raises(ValueError, match=message):
        rt.load_pretrained_imagenet(depth, weights)


# --- parts, freezing, new heads ---------------------------------------------------------------


def test_parts_of_an_imagenet_and_a_cifar_resnet():
    assert rt.model_parts(rt.resnet18()) == {
        "stem": ["conv1", "bn1", "relu", "maxpool"],
        "layer1": ["layer1"], "layer2": ["layer2"], "layer3": ["layer3"], "layer4": ["layer4"],
        "head": ["avgpool", "fc"],
    }  # fmt: skip
    parts = rt.model_parts(rt.cifar_resnet(20, preact=True))
    assert list(parts) == ["stem", "layer1", "layer2", "layer3", "head"]
    assert parts["head"] == ["post_norm", "avgpool", "fc"]
    # every parameter and buffer of the model belongs to exactly one part
    model = rt.cifar_resnet(20, preact=True)
    owned = [name for names in parts.values() for name in names]
    keys = {key.split(".")[0] for key in model.state_dict()}
    assert keys <= set(owned) and len(owned) == len(set(owned))


def _bn_modes(model: nn.Module) -> dict[str, bool]:
    return {n: m.training for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_freeze_all_but_the_last_stage_by_hand():
    torch.manual_seed(0)
    model = rt.cifar_resnet(20)
    rt.freeze(model, ["stem", "layer1", "layer2"])
    frozen_prefixes = ("conv1.", "bn1.", "layer1.", "layer2.")
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen_prefixes)), name
    model.train()  # as a training loop does every epoch
    for name, training in _bn_modes(model).items():
        assert training == (not (name + ".").startswith(frozen_prefixes)), name
    model.eval()
    assert not any(_bn_modes(model).values())
    rt.exercises.check_frozen(model, ["layer3", "fc"])  # the exercise's checker agrees


def test_frozen_bn_keeps_its_statistics_in_train_mode():
    torch.manual_seed(0)
    model = rt.freeze(rt.cifar_resnet(20), "body")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    x = torch.randn(8, 3, 32, 32) * 3 + 1
    model(x)
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"bn1"}  # the stem's BN was not frozen: it updated its statistics
    with torch.no_grad():  # by hand, from the fresh (0, 1): 0.9 · 0 + 0.1 · the batch's mean
        torch.testing.assert_close(after["bn1.running_mean"], 0.1 * model.conv1(x).mean((0, 2, 3)))


def test_freeze_without_freezing_bn_lets_statistics_adapt():
    model = rt.freeze(rt.cifar_resnet(20), "all", freeze_bn=False)
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert all(_bn_modes(model).values())
    norm = model.layer2[0].bn1
    running = norm.running_mean.clone()
    seen = []
    norm.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    model(torch.randn(4, 3, 32, 32))
    # by hand: torch's momentum 0.1 on the mean of what this BN saw
    expected = 0.9 * running + 0.1 * seen[0].mean((0, 2, 3))
    torch.testing.assert_close(norm.running_mean, expected)
    assert (expected - running).abs().max() > 1e-3  # it moved: the batch is not at its mean


def test_unfreeze_restores_training_and_bn_modes():
    model = rt.freeze(rt.cifar_resnet(20), "all")
    rt.unfreeze(model, ["layer3", "head"])
    model.train()
    for name, p in model.named_parameters():
        assert p.requires_grad == name.startswith(("layer3.", "fc.")), name
    for name, training in _bn_modes(model).items():
        assert training == name.startswith("layer3."), name
    rt.unfreeze(model)
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and all(_bn_modes(model).values())
    assert not any(isinstance(m, transfer.FrozenBatchNorm2d) for m in model.modules())


def test_freezing_keeps_the_optimizer_parameters_and_unfreezing_trains_them_again():
    # The swap to FrozenBatchNorm2d and back keeps the same Parameter objects, so an optimizer
    # made before `freeze` (as in gradual unfreezing) still updates them after `unfreeze`.
    model = rt.cifar_resnet(20)
    params = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rt.freeze(model, "all")
    assert list(model.parameters()) == params  # identity, not just equal values
    assert all(type(m) is transfer.FrozenBatchNorm2d for m in _norms(model))
    rt.unfreeze(model)
    assert all(type(m) is nn.BatchNorm2d for m in _norms(model))
    gamma = model.layer1[0].bn1.weight
    before = gamma.detach().clone()
    model(torch.randn(4, 3, 32, 32)).square().mean().backward()
    optimizer.step()
    assert gamma is params[[id(p) for p in params].index(id(gamma))]
    assert gamma.grad.abs().max() > 0
    torch.testing.assert_close(gamma.detach(), before - 0.1 * gamma.grad)  # SGD, lr 0.1, by hand


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_bn_survives_deepcopy_and_state_dict_round_trip():
    model = rt.freeze(rt.cifar_resnet(20), "stem")
    clone = copy.deepcopy(model).train()
    assert not clone.bn1.training and clone.layer1[0].bn1.training
    fresh = rt.cifar_resnet(20)
    fresh.load_state_dict(model.state_dict(), strict=True)  # same keys as an unfrozen model


def test_replace_head_gives_a_new_trainable_linear():
    model = rt.freeze(rt.load_pretrained_cifar(20), "all")
    old = model.fc
    rt.replace_head(model, 7)
    assert model.fc is not old and isinstance(model.fc, nn.Linear)
    assert (model.fc.in_features, model.fc.out_features) == (64, 7)
    assert all(p.requires_grad for p in model.fc.parameters())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    rt.exercises.check_new_head(model, 7, old_head=old)
    rt.exercises.check_frozen(model, ["fc"])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: rt.freeze(m, "layer4"), ValueError, r"unknown part 'layer4'; allowed: 'stem'"),
        (lambda m: rt.freeze(m, "stem", freeze_bn="yes"), TypeError, "freeze_bn must be"),
        (lambda m: rt.replace_head(m, 0), ValueError, "num_classes must be a positive int"),
        (lambda m: rt.model_parts(nn.Linear(2, 2)), TypeError, "got Linear"),
        (lambda m: rt.parameter_groups(m, {}), ValueError, "lrs is empty"),
        (lambda m: rt.parameter_groups(m, {"head": 0}), ValueError, "of 'head' must be a number"),
        (lambda m: rt.parameter_groups(m, {"body": 0.1, "layer2": 0.1}), ValueError,
         "parts 'body' and 'layer2' overlap"),
        (lambda m: rt.parameter_groups(m, {"head": 0.1}), ValueError,
         "trainable parameters belong to no part"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(rt.cifar_resnet(8))


def test_parameter_groups_hold_the_trainable_parameters_of_each_part():
    model = rt.freeze(rt.cifar_resnet(20), "stem")
    groups = rt.parameter_groups(model, {"body": 0.01, "head": 0.1})
    by_hand = {
        "body": {id(p) for n, p in model.named_parameters() if n.startswith("layer")},
        "head": {id(model.fc.weight), id(model.fc.bias)},
    }
    assert [(g["name"], g["lr"]) for g in groups] == [("body", 0.01), ("head", 0.1)]
    assert {g["name"]: {id(p) for p in g["params"]} for g in groups} == by_hand
    with_default = rt.parameter_groups(rt.cifar_resnet(20), {"head": 0.1}, default=0.01)
    assert [(g["name"], g["lr"], len(g["params"])) for g in with_default] == [
        ("head", 0.1, 2),
        ("default", 0.01, sum(1 for n, _ in model.named_parameters() if not n.startswith("fc"))),
    ]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    rt.exercises.check_optimizer_params(optimizer, model)


# --- re-estimating BN statistics ------------------------------------------------------------


def test_reestimate_bn_gives_the_mean_and_variance_by_hand():
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3)
    model = nn.Sequential(conv, norm, nn.Flatten(), nn.Linear(3 * 6 * 6, 2)).eval()
    images, labels = _tiny_data(40)
    images = images[:, :1, :8, :8].contiguous()
    with torch.no_grad():
        y = conv((images.float() / 255 - 0.5) / 0.25)  # (40, 3, 6, 6): what BN sees
    # one batch of all 40 images: the channel mean and the unbiased variance over (N, H, W)
    rt.reestimate_bn(model, (images, labels), mean=(0.5,), std=(0.25,), augment=False,
                     batch_size=40)  # fmt: skip
    assert not model.training and norm.momentum == 0.1  # mode and momentum restored
    torch.testing.assert_close(norm.running_mean, y.mean((0, 2, 3)))
    torch.testing.assert_close(norm.running_var, y.var((0, 2, 3), unbiased=True))
    # two batches of 20: the average of two equal batches' means is still the mean of all
    rt.reestimate_bn(model, (images, labels), mean=(0.5,), std=(0.25,), augment=False,
                     batch_size=20)  # fmt: skip
    torch.testing.assert_close(norm.running_mean, y.mean((0, 2, 3)))
    assert int(norm.num_batches_tracked) == 2


def test_reestimate_bn_agrees_with_torch_update_bn_and_skips_frozen_layers():
    torch.manual_seed(0)
    ours, theirs = rt.cifar_resnet(8, width=4), rt.cifar_resnet(8, width=4)
    theirs.load_state_dict(ours.state_dict())
    rt.freeze(ours, "stem")
    stem_stats = ours.bn1.running_mean.clone()
    data = _tiny_data(64)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    rt.reestimate_bn(ours, data, mean=mean, std=std, batch_size=16, seed=3)
    loader = rt.data.DeviceLoader(data, 16, train=True, mean=mean, std=std, device="cpu", seed=3)
    rt.freeze(theirs, "stem")  # hold its BN in eval mode too
    saved = theirs.bn1.running_mean.clone(), theirs.bn1.running_var.clone()
    torch.optim.swa_utils.update_bn(loader, theirs)
    theirs.bn1.running_mean.copy_(saved[0])  # update_bn resets every BN, frozen or not
    theirs.bn1.running_var.copy_(saved[1])
    assert torch.equal(ours.bn1.running_mean, stem_stats)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        if "num_batches_tracked" not in name:
            torch.testing.assert_close(a, b, msg=name)


# --- the training loop with frozen parts and parameter groups ---------------------------------

QUICK = TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cpu", precision="fp32",
                    channels_last=False, progress=False)  # fmt: skip


def _tiny_data(n: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (n,), generator=g)


def test_fit_keeps_a_frozen_backbone_and_its_bn_statistics_exactly():
    torch.manual_seed(0)
    model = rt.replace_head(rt.freeze(rt.cifar_resnet(8, width=4), "all"), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _tiny_data()
    rt.fit(model, data, data, QUICK)
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc"}


def test_fit_without_frozen_bn_lets_statistics_drift():
    # the mistake the chapter shows: requires_grad=False alone, BN still in train mode
    torch.manual_seed(0)
    model = rt.cifar_resnet(8, width=4)
    for p in model.parameters():
        p.requires_grad_(False)
    rt.replace_head(model, 10)
    running = model.bn1.running_mean.clone()
    conv1 = copy.deepcopy(model.conv1)
    data = _tiny_data()
    rt.fit(model, data, data, QUICK)
    assert torch.equal(conv1.weight, model.conv1.weight)
    # by hand: each training batch of fit's (2 epochs of 3) moves the stem's BN by momentum 0.1
    loader = train_loader(data, QUICK)
    with torch.no_grad():
        for epoch in range(1, QUICK.epochs + 1):
            loader.set_epoch(epoch)
            for x, _ in loader:
                running = 0.9 * running + 0.1 * conv1(x).mean((0, 2, 3))
    torch.testing.assert_close(model.bn1.running_mean, running)


def test_make_optimizer_keeps_each_groups_lr_and_the_schedule_scales_it():
    model = rt.cifar_resnet(8, width=4)
    groups = rt.parameter_groups(model, {"head": 0.1}, default=0.01)
    config = dataclasses.replace(QUICK, decay_bn_and_bias=False, epochs=4)
    optimizer = make_optimizer(model, config, groups)
    # each part split into decayed weights and exempt 1-D parameters, lr kept
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("head", 0.1, config.weight_decay), ("head", 0.1, 0.0),
        ("default", 0.01, config.weight_decay), ("default", 0.01, 0.0),
    ]  # fmt: skip
    assert [len(g["params"]) for g in optimizer.param_groups[:2]] == [1, 1]
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=1)
    for _ in range(2):  # to the first milestone, 50% of 4 steps
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.01, 0.001, 0.001])


def test_make_optimizer_without_groups_is_unchanged():
    model = rt.freeze(rt.cifar_resnet(8, width=4), "stem")
    (group,) = make_optimizer(model, QUICK).param_groups
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in group["params"]} == trainable
    assert group["lr"] == QUICK.lr


def test_make_optimizer_rejects_groups_that_do_not_match_the_model():
    model = rt.cifar_resnet(8, width=4)
    old_head = model.fc
    groups = rt.parameter_groups(model, {"head": 0.1}, default=0.01)
    rt.replace_head(model, 5)
    with pytest.raises(ValueError, match=r"param_groups\[0\] holds a tensor of shape \(10, 16\)"):
        make_optimizer(model, QUICK, groups)
    assert old_head is not model.fc
    fresh = rt.parameter_groups(model, {"head": 0.1}, default=0.01)
    with pytest.raises(ValueError, match=r"fc.weight is in param_groups\[0\] and .*\[1\]"):
        make_optimizer(model, QUICK, [fresh[0], {"params": [model.fc.weight]}])
    with pytest.raises(ValueError, match="leave out 2 trainable parameters"):
        make_optimizer(model, QUICK, fresh[1:])


def test_fit_trains_each_group_at_its_own_rate():
    # lr 1e-9 for the body: it barely moves; the head at 0.05 moves a lot
    torch.manual_seed(0)
    model = rt.cifar_resnet(8, width=4)
    body = model.layer2[0].conv1.weight.clone()
    head = model.fc.weight.clone()
    groups = rt.parameter_groups(model, {"head": 0.05}, default=1e-9)
    data = _tiny_data()
    rt.fit(model, data, data, dataclasses.replace(QUICK, weight_decay=0.0), param_groups=groups)
    assert (model.layer2[0].conv1.weight - body).abs().max() < 1e-6
    assert (model.fc.weight - head).abs().max() > 1e-3


# --- feature extraction and the linear probe --------------------------------------------------


@pytest.mark.parametrize("preact", [False, True])
def test_extracted_features_are_what_the_head_reads(preact):
    torch.manual_seed(0)
    model = rt.cifar_resnet(8, width=4, preact=preact)
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    seen = []
    model.fc.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    model.eval()
    with torch.no_grad():
        model(rt.data.normalize(images, (0.5,) * 3, (0.25,) * 3))
    model.train()
    features = rt.extract_features(model, (images, torch.zeros(12, dtype=torch.long)),
                                   mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=5)  # fmt: skip
    assert features.shape == (12, model.fc.in_features)
    torch.testing.assert_close(features, seen[0])
    assert model.training  # the mode is restored


def _toy_problem(n=90, d=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])[:, :d]
    features = centres[labels] + torch.randn(n, d, generator=generator) * 1.5 + 5.0
    return features, labels


def test_the_linear_probe_reaches_the_optimum_that_newtons_method_reaches():
    # Oracle: the L2-regularised problem is convex (strictly, up to a constant added to every
    # bias, which no probability sees), so another solver than the probe's L-BFGS reaches the
    # same optimum: Newton's method on the 12 parameters, with the exact Hessian (its
    # pseudo-inverse, for that flat direction); compare the two classifiers.
    features, labels = _toy_problem()
    head = rt.fit_linear_probe(features, labels, 3, weight_decay=0.05)
    x = features.double()
    shift, scale = x.mean(0), x.std(0)
    z = (x - shift) / scale

    def objective(theta: torch.Tensor) -> torch.Tensor:  # theta: the weight (3, 3), the bias (3)
        weight, bias = theta[:9].view(3, 3), theta[9:]
        return F.cross_entropy(z @ weight.T + bias, labels) + 0.05 / 2 * weight.square().sum()

    theta = torch.zeros(12, dtype=torch.float64)
    for _ in range(25):
        gradient = torch.autograd.functional.jacobian(objective, theta)
        hessian = torch.autograd.functional.hessian(objective, theta)
        theta = theta - torch.linalg.pinv(hessian) @ gradient
    assert torch.autograd.functional.jacobian(objective, theta).abs().max() < 1e-10  # converged
    expected = z @ theta[:9].view(3, 3).T + theta[9:]  # logits of Newton's solution
    with torch.no_grad():
        got = head(features).double()
    # logits are defined up to a constant per sample: compare the log-probabilities
    torch.testing.assert_close(got.log_softmax(1), expected.log_softmax(1), atol=2e-4, rtol=0)


def test_the_linear_probe_separates_separable_classes_and_checks_its_input():
    features, labels = _toy_problem(seed=1)
    features = features + 10 * F.one_hot(labels, 3).float()  # far apart: separable
    head = rt.fit_linear_probe(features, labels, 3)
    assert torch.equal(head(features).argmax(1), labels)
    with pytest.raises(ValueError, match=r"labels range from 0 to 2; allowed: 0 to 1"):
        rt.fit_linear_probe(features, labels, 2)
    with pytest.raises(ValueError, match=r"features must be \(N, d\)"):
        rt.fit_linear_probe(features[:, 0], labels, 3)


@pytest.mark.parametrize(
    "function",
    [
        transfer.replace_head,
        transfer.freeze,
        transfer.FrozenBatchNorm2d,
        transfer._swap_batch_norms,
        transfer.extract_features,
        transfer.fit_linear_probe,
        transfer.reestimate_bn,
    ],
)
def test_sources_that_chapter_6_prints_hold_no_formatter_markers(function):
    # The chapter prints these with inspect.getsource: a reader should not see CI's plumbing.
    assert "fmt:" not in inspect.getsource(function)
