import os
import tempfile

# spinning OpenMP threads starve a loaded 2-core machine; set before torch is imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

# wandb must never touch the network or the home folder during tests
_WANDB_HOME = tempfile.mkdtemp(prefix="snn-wandb-")
for _var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
    os.environ[_var] = _WANDB_HOME
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _small_thread_count():
    import torch

    torch.set_num_threads(2)
    yield
