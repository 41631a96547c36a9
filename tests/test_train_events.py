"""One training step of `snn-train data=<each event dataset> data.root=<tiny fixture>`, and the
one-line CLI errors for missing and corrupt event data."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from tests import fakedata
except ImportError:  # tests/ is on sys.path (pytest rootdir-less import)
    import fakedata

from helpers import compose_cfg, run_cli
from snn_lightning.cli.train import train

pytestmark = pytest.mark.filterwarnings("ignore:.*the full dataset has:UserWarning")

FIXTURES = {
    "nmnist": lambda root: fakedata.write_fake_nmnist(root, n_train_per_class=1, n_test_per_class=1, n_events=200),
    "dvs_gesture": lambda root: fakedata.write_fake_dvs_gesture(root, n_train_users=1, n_test_users=1, n_events=300),
    "ncaltech101": lambda root: fakedata.write_fake_ncaltech101(root, n_per_class=2, n_events=150),
}


def overrides(name: str, root: Path) -> list[str]:
    return [f"data={name}", f"data.root={root}", "data.num_workers=0", "data.pin_memory=false",
            "data.image_size=16", f"data.cache_dir={root / 'cache'}", "debug=fast", "T=2", "batch_size=4"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_one_training_step_per_event_dataset(name, tmp_path):
    root = tmp_path / "data"
    FIXTURES[name](root)
    metrics = train(compose_cfg(tmp_path / "run", overrides(name, root)))
    assert {"test/acc", "test/acc_t1", "test/acc_t2"} <= set(metrics)
    assert metrics["global_step"] == 1
    assert any((root / "cache").rglob("*.pt"))  # the frames went through the cache


@pytest.mark.slow
def test_cli_trains_a_step_on_gesture(tmp_path):
    root = tmp_path / "data"
    FIXTURES["dvs_gesture"](root)
    r = run_cli("snn_lightning.train", *overrides("dvs_gesture", root), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "status.json").is_file()


@pytest.mark.slow
def test_cli_missing_data_is_one_line(tmp_path):
    r = run_cli("snn_lightning.train", *overrides("nmnist", tmp_path / "nowhere"), cwd=tmp_path)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-3000:]
    assert str(tmp_path / "nowhere" / "NMNIST" / "Train") in errors[0] and "data.download=true" in errors[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_cli_corrupt_file_in_a_worker_names_the_file(tmp_path):
    root = tmp_path / "data"
    FIXTURES["nmnist"](root)
    bad = sorted((root / "NMNIST" / "Train").rglob("*.bin"))
    for f in bad:  # every training file: whichever the shuffled first batch draws is corrupt
        f.write_bytes(f.read_bytes()[:-2])
    args = [a for a in overrides("nmnist", root) if not a.startswith("data.num_workers")] + ["data.num_workers=2"]
    r = run_cli("snn_lightning.train", *args, cwd=tmp_path)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-3000:]
    assert "cannot read N-MNIST event file" in errors[0] and any(str(f) in errors[0] for f in bad), errors[0]
    assert "DataLoader worker" not in errors[0]
