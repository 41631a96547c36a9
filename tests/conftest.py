import os
import tempfile

# spinning OpenMP threads starve a loaded 2-core machine; set before torch is imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# no background inductor compiles outliving the suite (tests/test_compile_cache.py turns it on where it tests it)
os.environ.setdefault("SNN_LIGHTNING_AUTO_COMPILE", "0")

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


def assert_one_line(err: BaseException) -> str:
    """The message of ``err``, asserted to be one non-empty line."""
    msg = str(err)
    assert "\n" not in msg and msg.strip() == msg and msg, repr(msg)
    return msg


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if torchvision or tonic tries to fetch anything."""
    import urllib.request

    import tonic.dataset
    import tonic.datasets.cifar10dvs
    import torchvision.datasets.cifar
    import torchvision.datasets.utils

    def boom(*args, **kwargs):
        pytest.fail(f"a download was attempted: {args!r}")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", boom)
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", boom)
    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", boom)
    monkeypatch.setattr(tonic.datasets.cifar10dvs, "extract_archive", boom)
    monkeypatch.setattr(urllib.request, "urlopen", boom)
