"""`fit` under torchrun: two CPU processes on gloo train with DistributedDataParallel.

The worker (tests/support/ddp_worker.py) trains a BatchNorm net (with augmentation) and a
linear net on each rank. Both ranks must end with the same parameters and buffers, different
from the initial ones. Oracle for the linear net: DDP averages the ranks' gradients, and rank
r's batch k is `perm[32k + r :: 2][:16]` of the shared permutation, so 2 ranks x batch 16 take
the same steps as one process with batch 32 (up to the order of floating-point sums).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from support import ddp_worker  # tests/ is on sys.path (pytest imports test modules from there)

from resnet_tutorial.train import fit

WORKER = Path(ddp_worker.__file__)  # run as a script: tests/support/ddp_worker.py
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed"
    ),
]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run the worker under torchrun with 2 processes; what each rank saved."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # in case pytest itself runs under torchrun
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(WORKER), str(out)]  # fmt: skip
    # Its own session, so that a hang is killed with its workers (torchrun's children would
    # otherwise outlive it); a worker that hangs dumps its stacks first (see the worker).
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun hung for 150 s; its output:\n{output[-6000:]}")
    assert process.returncode == 0, f"torchrun failed:\n{output[-6000:]}"
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("name", ["bn", "linear"])
def test_ranks_end_identical_and_trained(ranks, name):
    build, _ = ddp_worker.RUNS[name]
    initial = build().state_dict()
    state0, state1 = ranks[0][name]["state"], ranks[1][name]["state"]
    assert state0.keys() == state1.keys() == initial.keys()
    for key in state0:
        torch.testing.assert_close(state0[key], state1[key], rtol=0, atol=0, msg=key)
    for key, value in initial.items():
        if value.is_floating_point():
            assert not torch.equal(state0[key], value), f"{key} did not change in training"
    history0, history1 = ranks[0][name]["history"], ranks[1][name]["history"]
    for key in ("train_loss", "train_error", "test_loss", "test_error", "lr"):
        assert history0[key] == history1[key], key  # all-reduced: the same on every rank


def test_two_ranks_equal_one_process_with_the_global_batch(ranks):
    """The linear net: DDP 2 x 16 against a plain single-process run with batch 32."""
    model = ddp_worker.linear_net()
    config = dataclasses.replace(ddp_worker.CONFIG, batch_size=2 * ddp_worker.CONFIG.batch_size)
    history = fit(model, ddp_worker.TRAIN, ddp_worker.TEST, config).to_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["linear"]["state"][key], value, msg=key)
    for key in ("train_loss", "train_error", "test_loss", "test_error", "lr"):
        assert ranks[0]["linear"]["history"][key] == pytest.approx(history[key], rel=1e-5), key
