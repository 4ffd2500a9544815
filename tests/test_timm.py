"""The deep stem (ResNet-C) and the average-pool shortcut (ResNet-D) against timm's models.

He et al. (2019a) describe ResNet-C and ResNet-D; timm implements them as `resnet50c`,
`resnet50d` and `resnet18d`, and the package claims timm's parameter names for them. timm's
randomly initialised models (no download) load key for key into ours and give the same outputs.
timm is a pinned test dependency (requirements.txt), not a dependency of the package.
"""

from __future__ import annotations

import pytest
import timm
import torch

import resnet_tutorial as rt


@pytest.mark.parametrize(
    ("timm_name", "depth", "options"),
    [
        ("resnet50c", 50, {"stem": "deep"}),
        ("resnet50d", 50, {"stem": "deep", "shortcut": "D"}),
        ("resnet18d", 18, {"stem": "deep", "shortcut": "D"}),
    ],
)
def test_timm_state_dicts_load_into_ours_and_give_the_same_outputs(timm_name, depth, options):
    torch.manual_seed(0)
    reference = timm.create_model(timm_name, pretrained=False).eval()
    ours = rt.resnet(depth, **options).eval()
    assert rt.count_parameters(ours) == sum(p.numel() for p in reference.parameters())
    ours.load_state_dict(reference.state_dict(), strict=True)  # the same names and shapes
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
