"""The experiment framework end to end: configs, training, resume, evaluation, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf, open_dict

from helpers import compose_cfg, run_cli
from snn_lightning.losses import MeanCrossEntropy, TETLoss
from snn_lightning.module import SNNModule, cumulative_mean, to_time_major
from snn_lightning.cli.train import train
from snn_lightning.config import config_groups
from snn_lightning.errors import UserError
from snn_lightning.experiment import build_net, per_device_batch_size

SMOKE = ["debug=smoke", "logger=csv"]


class FakeData:
    num_classes, in_channels, input_size = 10, 3, 32


# --- configs ----------------------------------------------------------------------------------
def test_config_groups_are_complete():
    groups = config_groups()
    want = {
        "data": {"digits", "cifar10", "cifar100", "imagenet", "cifar10_dvs"},
        "model": {"resnet19", "cnn7", "resnet34", "sew_resnet34", "small_cnn"},
        "neuron": {"lif"}, "surrogate": {"rectangular", "triangular", "sigmoid"}, "sg": {"as", "rs", "trsg"},
        "mp_init": {"on", "off"}, "norm": {"none", "bn", "tdbn", "tebn", "tab"}, "loss": {"ce", "tet"},
        "optimizer": {"sgd", "adam"}, "scheduler": {"cosine", "none"},
        "trainer": {"cpu", "gpu", "ddp", "ddp_cpu"}, "logger": {"csv", "wandb", "none"},
    }
    for group, options in want.items():
        assert options <= set(groups[group]), group


@pytest.mark.parametrize("group", ["data", "model", "surrogate", "sg", "mp_init", "norm", "loss", "optimizer",
                                   "scheduler", "trainer", "logger", "callbacks", "debug", "experiment"])
def test_every_option_composes(group, tmp_path):
    for option in config_groups()[group]:
        cfg = compose_cfg(tmp_path, [f"{group}={option}"])
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_overrides_reach_the_neurons(tmp_path):
    cfg = compose_cfg(tmp_path, ["model=resnet19", "sg=as", "surrogate=triangular", "mp_init=off", "norm=tebn",
                                 "neuron.v_threshold=0.5", "neuron.reset=hard", "T=2"])
    net = build_net(cfg, FakeData)
    lifs = [m for _, m in net.neuron_layers()]
    assert len(lifs) == 17
    for lif in lifs:
        assert lif.sg_mode == "as" and lif.reset_mode == "hard" and not lif.mp_init
        assert type(lif.surrogate).__name__ == "Triangular"
        assert lif.v_threshold.item() == pytest.approx(0.5)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 2, 10)


@pytest.mark.parametrize("option", ["resnet19", "cnn7", "resnet34", "sew_resnet34", "small_cnn"])
def test_every_model_option_builds(option, tmp_path):
    cfg = compose_cfg(tmp_path, [f"model={option}", "T=2"])
    net = build_net(cfg, FakeData)
    assert len(net.neuron_layers()) > 0


# --- pieces ---------------------------------------------------------------------------------------
def test_cumulative_mean_and_time_major():
    logits = torch.arange(12.0).view(3, 2, 2)
    cm = cumulative_mean(logits)
    assert torch.allclose(cm[0], logits[0]) and torch.allclose(cm[2], logits.mean(0))
    assert torch.allclose(cm[1], logits[:2].mean(0))
    assert to_time_major(torch.zeros(5, 4, 2, 8, 8)).shape == (4, 5, 2, 8, 8)
    assert to_time_major(torch.zeros(5, 3, 8, 8)).shape == (5, 3, 8, 8)


def test_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 6, 5), torch.randint(0, 5, (6,))
    ce = torch.nn.functional.cross_entropy
    assert MeanCrossEntropy()(logits, y).item() == pytest.approx(ce(logits.mean(0), y).item())
    per_t = sum(ce(logits[t], y) for t in range(4)) / 4
    assert TETLoss(lamb=0.0)(logits, y).item() == pytest.approx(per_t.item(), rel=1e-6)
    mse = ((logits - 1.0) ** 2).mean()
    assert TETLoss(lamb=0.5)(logits, y).item() == pytest.approx(0.5 * per_t.item() + 0.5 * mse.item(), rel=1e-6)
    assert MeanCrossEntropy(fr_weight=2.0)(logits, y, torch.tensor(0.25)).item() == pytest.approx(
        ce(logits.mean(0), y).item() + 0.5)


def test_neuron_weight_decay_switch(tmp_path):
    cfg = compose_cfg(tmp_path, ["T=2"])
    net = build_net(cfg, type("D", (), {"num_classes": 10, "in_channels": 1, "input_size": 8}))
    for flag, want in ((True, 5e-4), (False, 0.0)):
        m = SNNModule(net, 10, 2, optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1), neuron_weight_decay=flag)
        groups = m.parameter_groups(5e-4)
        neuron_ids = {id(p) for _, lif in net.neuron_layers() for p in lif.parameters()}
        assert {id(p) for p in groups[1]["params"]} == neuron_ids and groups[1]["weight_decay"] == want
        assert groups[0]["weight_decay"] == 5e-4 and not neuron_ids & {id(p) for p in groups[0]["params"]}


def test_batch_split():
    assert per_device_batch_size(64, 4) == 16
    with pytest.raises(UserError, match="batch_size 10 does not divide across 4 processes"):
        per_device_batch_size(10, 4, 2, 2)


# --- training runs ------------------------------------------------------------------------------
def test_fast_dev_run_logs_per_timestep_accuracy(tmp_path):
    metrics = train(compose_cfg(tmp_path, ["debug=fast", "T=3"]))
    assert {"test/acc", "test/acc_t1", "test/acc_t2", "test/acc_t3", "val/acc"} <= set(metrics)
    assert "test/acc_t4" not in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["test/acc"] == metrics["test/acc"]


def test_resume_continues_with_mp_init_buffers(tmp_path):
    first = tmp_path / "first"
    train(compose_cfg(first, SMOKE))
    last = first / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    saved = {k: v for k, v in ckpt["state_dict"].items() if k.endswith("mp_init_mean")}
    assert saved and any(v.item() != 0.0 for v in saved.values())
    assert ckpt["global_step"] == 3
    assert ckpt["hyper_parameters"]["config"]["T"] == 4

    second = tmp_path / "second"
    cfg = compose_cfg(second, SMOKE + ["trainer.max_epochs=2", f"ckpt_path={last}"])
    with open_dict(cfg):
        cfg.callbacks.capture = {"_target_": f"{__name__}.CaptureStart"}
    SEEN.clear()
    metrics = train(cfg)
    seen = SEEN
    assert seen["step"] == 3
    assert seen["mp"].keys() == saved.keys()
    assert all(torch.equal(seen["mp"][k], saved[k]) for k in saved)
    assert metrics["global_step"] == 6 and metrics["epoch"] == 2


def test_last_ckpt_is_the_latest_state_even_when_val_acc_stalls(tmp_path):
    """lr=0: val/acc never improves after epoch 0, so the best checkpoint stays there; last.ckpt moves on."""
    metrics = train(compose_cfg(tmp_path, SMOKE + ["trainer.max_epochs=3", "optimizer.lr=0.0"]))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == metrics["global_step"] == 9 and last["epoch"] == 2
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert Path(saved["best_checkpoint"]).name.startswith("epoch000-")
    assert saved["tested_on"]["epoch"] == 0 and saved["tested_on"]["step"] == 3
    assert saved["last_checkpoint"].endswith("last.ckpt")


SEEN: dict = {}


class CaptureStart(Callback):
    """Records what a resumed run starts from."""

    def on_train_start(self, trainer, pl_module):
        SEEN["step"] = trainer.global_step
        SEEN["mp"] = {f"net.{k}": v.clone() for k, v in pl_module.net.state_dict().items() if k.endswith("mp_init_mean")}


@pytest.mark.slow
def test_default_run_reaches_95_percent(tmp_path):
    """The README's promise: `snn-train` with no overrides, >= 95% test accuracy on digits."""
    metrics = train(compose_cfg(tmp_path, ["logger=csv"]))
    assert metrics["test/acc"] >= 0.95
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    hparams = (tmp_path / "csv" / "hparams.yaml").read_text()
    assert "sg_mode: trsg" in hparams and "mp_init: true" in hparams


# --- command line -------------------------------------------------------------------------------
def test_cli_train_then_eval(tmp_path):
    r = run_cli("snn_lightning.train", *SMOKE, "T=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "final test accuracy" in r.stdout and str(tmp_path / "run") in r.stdout
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "finished"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    r = run_cli("snn_lightning.eval", f"ckpt_path={ckpt}", cwd=tmp_path / "run")
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads((tmp_path / "run" / "run" / "metrics.json").read_text())["metrics"]
    assert {"test/acc", "test/acc_t1", "test/acc_t2"} <= set(got)
    assert 0.0 <= got["test/acc"] <= 1.0


@pytest.mark.parametrize(
    "args,message",
    [
        (["model=resnet91"], "error: unknown model 'resnet91'; allowed: cnn7, resnet19, resnet34, sew_resnet34, small_cnn"),
        (["sg=as,rss"], "error: unknown sg 'rss'; allowed: as, rs, trsg"),
        (["data=mnist"], "error: unknown data 'mnist'; allowed: cifar10, cifar100, cifar10_dvs, digits"),
        (["T=0"], "error: T must be a positive integer number of timesteps, got 0"),
        (["T=-3"], "error: T must be a positive integer number of timesteps, got -3"),
        (["trainer=ddp_cpu", "batch_size=7"], "error: batch_size 7 does not divide across 2 processes"),
        (["data=cifar10", "data.root=/nonexistent/cifar"], "/nonexistent/cifar"),
        (["neuron.v_threshold=-1"], "error: v_threshold must be greater than 0, got -1.0"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    r = run_cli("snn_lightning.train", "debug=fast", *args, cwd=tmp_path)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr[-3000:]
    assert "Traceback" not in r.stderr


def test_cli_eval_missing_checkpoint(tmp_path):
    r = run_cli("snn_lightning.eval", "ckpt_path=/no/such.ckpt", cwd=tmp_path)
    assert r.returncode != 0 and "error: checkpoint /no/such.ckpt does not exist" in r.stderr


# --- every real data loader, one short training step on files in the exact on-disk format -------
def _fake_dataset(name: str, root: Path) -> list[str]:
    import fakedata

    if name == "cifar10":
        fakedata.write_fake_cifar10(root, n_train=16, n_test=8)
        return ["data.verify_md5=false"]
    if name == "cifar100":
        fakedata.write_fake_cifar100(root, n_train=16, n_test=8)
        return ["data.verify_md5=false"]
    if name == "imagenet":
        fakedata.write_fake_imagenet(root, n_classes=3, n_train_per_class=4, n_val_per_class=2, size=40)
        return ["data.image_size=32", "data.persistent_workers=false"]
    fakedata.write_fake_cifar10_dvs(root, n_per_class=100, n_events=300)
    return ["data.image_size=16", "data.cache_dir=" + str(root / "cache")]


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet", "cifar10_dvs"])
def test_one_training_step_per_dataset(name, tmp_path):
    root = tmp_path / "data"
    extra = _fake_dataset(name, root)
    cfg = compose_cfg(tmp_path / "run", [f"data={name}", f"data.root={root}", "data.num_workers=0",
                                         "data.pin_memory=false", "debug=fast", "T=2", "batch_size=4", *extra])
    metrics = train(cfg)
    assert {"test/acc", "test/acc_t1", "test/acc_t2"} <= set(metrics)
    assert metrics["global_step"] == 1


def test_cli_multirun_with_default_sweep_dir(tmp_path):
    """`snn-train -m ...` with no hydra.sweep.dir: jobs land under ./outputs/train/multiruns/<time>/<overrides>."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, "-m", "snn_lightning.train", "-m", "debug=fast", "seed=1,2"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    statuses = sorted((tmp_path / "outputs" / "train" / "multiruns").glob("*/*/status.json"))
    assert [p.parent.name for p in statuses] == ["debug=fast,seed=1", "debug=fast,seed=2"]
    assert all(json.loads(p.read_text())["status"] == "finished" for p in statuses)


def test_channels_last_gives_the_same_logits(tmp_path):
    cfg = compose_cfg(tmp_path, ["T=2", "channels_last=true", "neuron.backend=torch"])
    fake = type("D", (), {"num_classes": 10, "in_channels": 1, "input_size": 8})
    torch.manual_seed(0)
    net_cl = build_net(cfg, fake).eval()
    torch.manual_seed(0)
    cfg.channels_last = False
    net = build_net(cfg, fake).eval()
    assert next(p for p in net_cl.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(net_cl(x), net(x), atol=1e-5)


@pytest.mark.slow
def test_compiled_model_trains(tmp_path):
    """`compile=true`: torch.compile of the whole network (CPU inductor; the first step compiles)."""
    metrics = train(compose_cfg(tmp_path, ["debug=fast", "compile=true", "T=2", "batch_size=8"]))
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["global_step"] == 1


def test_compile_neurons_selects_the_compiled_backend_per_neuron(tmp_path):
    dm = type("D", (), {"num_classes": 10, "in_channels": 1, "input_size": 8})
    for flag, want in ((False, "auto"), (True, "compiled")):
        net = build_net(compose_cfg(tmp_path, [f"compile_neurons={str(flag).lower()}"]), dm)
        assert {lif.backend for _, lif in net.neuron_layers()} == {want}


@pytest.mark.slow
def test_compiled_run_survives_the_monitor_switching_on_and_off(tmp_path):
    """`compile=true` over several steps with the neuron monitor installed on every other step
    (it used to crash at the second step), and checkpoints that hold each weight once."""
    cfg = compose_cfg(tmp_path, [
        "compile=true", "T=2", "batch_size=8", "logger=csv", "trainer.max_epochs=1", "+trainer.limit_train_batches=5",
        "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "callbacks.neuron_stats.every_n_steps=2",
    ])
    metrics = train(cfg)
    assert metrics["global_step"] == 5
    from snn_lightning import runs

    log = runs.read_run_metrics_csv(tmp_path)
    steps, _ = log.series(next(c for c in log.columns if c.startswith("neuron/") and c.endswith("/fr_t1")))
    assert sorted({int(s) for s in steps}) == [0, 2, 4]  # recorded on the monitored steps, eagerly
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not [k for k in ckpt["state_dict"] if k.startswith("_compiled.")]
