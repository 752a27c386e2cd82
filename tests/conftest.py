import json
import os
import sys

import pytest
import torch

#: TRITON_INTERPRET as the suite was started with (the kernel tests set it for themselves only)
GIVEN_TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: batch-1 forwards of small maps gain nothing from threads, and OpenMP
    threads that spin while another process holds the cores make them up to 100x slower on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL_CELL = {
    "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ["dil_conv_3x3", 2], ["skip_connect", 0]],
    "normal_concat": [2, 3],
    "reduce": [["max_pool_3x3", 0], ["sep_conv_3x3", 1], ["skip_connect", 2], ["avg_pool_3x3", 0]],
    "reduce_concat": [2, 3],
}


@pytest.fixture
def small_cell_file(tmp_path):
    """A 2-node genotype with convs, pools, skips and a strided FactorizedReduce, written as JSON."""
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(SMALL_CELL))
    return path

