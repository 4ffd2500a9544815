"""Settings shared by every test module.

`make test-unit` runs the suite on two pytest-xdist workers on a two-core machine: each worker
uses one torch thread, so that the two do not fight over the cores. (Benchmarks, not tests,
measure speed.)

The workers share the tests file by file (`--dist loadgroup`, each module one group), because
many modules build an expensive fixture once. The exception is a test marked `spread`: each of
its cases is a group of its own, and the spread cases run first, the longest first, so that the
two workers finish together instead of one of them re-evaluating every reference run alone.
"""

import pytest
import torch


def pytest_configure(config):
    torch.set_num_threads(1)
    config.addinivalue_line(
        "markers", "spread(cost=f): run each case on whichever worker is free; f(item) orders them"
    )


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    markers = {item: item.get_closest_marker("spread") for item in items}
    costs = {item: marker.kwargs["cost"](item) for item, marker in markers.items() if marker}
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = item.nodeid if item in costs else item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))
    spread = sorted(costs, key=costs.get, reverse=True)
    items[:] = spread + [item for item in items if item not in costs]
