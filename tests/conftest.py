"""Settings shared by every test module.

`make test-unit` runs the suite on two pytest-xdist workers on a two-core machine: each worker
uses one torch thread, so that the two do not fight over the cores. (Benchmarks, not tests,
measure speed.)
"""

import torch


def pytest_configure(config):
    torch.set_num_threads(1)
