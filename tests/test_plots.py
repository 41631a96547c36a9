"""Every figure is produced, non-empty, with the expected panels."""
from __future__ import annotations

import pytest

from snn_lightning import plots, runs

T = 4


def layer_stats(shift=0.0):
    return {
        "v_mean": [0.1 + shift, 0.2, 0.3, 0.35],
        "v_std": [0.5, 0.5, 0.5, 0.5],
        "v_mean_active": [0.6 + shift, 0.8, 0.85, 0.9],
        "v_std_active": [0.2, 0.2, 0.2, 0.2],
        "fr": [0.05, 0.1, 0.12, 0.13],
        "active_fraction": 0.4,
        "neurons": 100.0,
        "mp_init": 0.3,
        "v_threshold": 1.0,
        "tau": 2.0,
    }


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_membrane_distribution(tmp_path):
    edges = [-2 + 0.5 * i for i in range(9)]
    counts = [[0, 1, 2, 5, 9, 4, 2, 1] for _ in range(T)]
    fig = plots.plot_membrane_distribution(counts, edges, "layer3.0.sn1", layer_stats())
    assert len(fig.axes) == 2
    assert titles(fig) == ["membrane distribution: layer3.0.sn1", "membrane mean per timestep"]
    assert len([l for l in fig.axes[0].lines if l.get_label().startswith("t=")]) == T
    assert_png(plots.save_figure(fig, tmp_path / "m.png"))
    assert len(plots.plot_membrane_distribution(counts, edges, "x").axes) == 1


@pytest.mark.parametrize("n_layers, panels", [(2, 2), (6, 6), (17, 6)])
def test_firing_rates(tmp_path, n_layers, panels):
    frs = {f"l{i}": [0.1 * i, 0.1, 0.2, 0.3] for i in range(n_layers)}
    fig = plots.plot_firing_rates(frs, max_layers=6)
    assert len(fig.axes) == panels
    assert titles(fig)[0] == "l0" and titles(fig)[-1] == f"l{n_layers - 1}"
    assert all(len(ax.patches) == T for ax in fig.axes)
    assert_png(plots.save_figure(fig, tmp_path / "fr.png"))


def test_class_predictions(tmp_path):
    counts = [[10, 0, 0], [5, 3, 2], [4, 3, 3], [3, 4, 3]]
    fig = plots.plot_class_predictions(counts, ["cat", "dog", "car"])
    assert titles(fig) == [f"t={t}" for t in range(1, T + 1)]
    assert all(len(ax.patches) == 3 for ax in fig.axes)
    assert fig.axes[0].patches[0].get_height() == pytest.approx(1.0)
    assert_png(plots.save_figure(fig, tmp_path / "p.png"))


def test_logit_pca(tmp_path):
    points = [[[i * 0.1, -i * 0.2] for i in range(8)] for _ in range(T)]
    labels = [0, 1, 2, 3] * 2
    fig = plots.plot_logit_pca(points, labels, [[0.6, 0.2]] * T)
    assert len(fig.axes) == T and titles(fig)[0] == "t=1 (80% var)"
    assert len(fig.axes[0].collections) == 4  # one scatter per class
    assert_png(plots.save_figure(fig, tmp_path / "pca.png"))


def test_curves_and_params_from_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "epoch,step,train/loss_step,val/acc,val/acc_t1,val/acc_t2,tau/stem.lif,v_threshold/stem.lif,mp_init/stem.lif,neuron/stem.lif/fr_t1\n"
        "0,0,2.3,,,,2.0,1.0,0.0,0.1\n"
        "0,5,2.0,,,,,,,\n"
        "0,9,,0.5,0.4,0.5,,,,\n"
        "1,10,1.5,,,,2.1,0.9,0.2,0.2\n"
        "1,19,,0.7,0.6,0.7,,,,\n"
    )
    hist = runs.read_metrics_csv(csv).history()
    assert hist["train/loss_step"] == ([0.0, 5.0, 10.0], [2.3, 2.0, 1.5])
    assert hist["tau/stem.lif"] == ([0.0, 10.0], [2.0, 2.1])
    fig = plots.plot_training_curves(hist)
    assert titles(fig) == ["loss", "accuracy", "validation accuracy per timestep"]
    assert len(fig.axes[2].lines) == 2
    fig = plots.plot_neuron_params(hist)
    assert titles(fig) == ["V_thr", "τ", "MP-Init running mean"]
    assert all(len(ax.lines) == 1 for ax in fig.axes)
    written = plots.write_history_figures(tmp_path / "figs", hist)
    assert set(written) == {"training_curves", "neuron_params"}
    for p in written.values():
        assert_png(p)
    assert plots.write_history_figures(tmp_path / "none", {}) == {}


def test_comparison(tmp_path):
    def summary(shift, acc):
        layers = {"stem.lif": layer_stats(shift), "body.0.lif": layer_stats(shift / 2)}
        per = {n: {"active": abs(st["v_mean_active"][0] - st["v_mean_active"][-1]), "all": 0.1} for n, st in layers.items()}
        return {
            "layers": layers,
            "drift": {"per_layer": per, "mean_active": sum(d["active"] for d in per.values()) / 2, "mean_all": 0.1},
            "accuracy": {"instant": acc, "cumulative": acc},
            "firing_rate": [0.1, 0.12, 0.13, 0.13],
        }

    fig = plots.plot_comparison([summary(0.3, [0.8] * T), summary(-0.4, [0.3, 0.6, 0.7, 0.8])], ["MP-Init on", "MP-Init off"])
    assert titles(fig) == [
        "temporal drift of mean membrane (active)",
        "accuracy per timestep",
        "firing rate per timestep",
        "membrane per timestep: stem.lif",
    ]
    assert len(fig.axes[0].patches) == 4  # 2 layers x 2 models
    assert fig._suptitle.get_text() == "MP-Init on vs MP-Init off"
    assert_png(plots.save_figure(fig, tmp_path / "c.png"))


def test_write_stage_figures(tmp_path):
    neurons = {"a": layer_stats(), "b": layer_stats(0.2)}
    hists = {"a": {"counts": [[1, 2, 3]] * T, "edges": [0.0, 1.0, 2.0, 3.0]}}
    preds = {"counts": {"instant": [[3, 1]] * T, "cumulative": [[2, 2]] * T}}
    pca = {"points": [[[0.0, 1.0], [1.0, 0.0]]] * T, "labels": [0, 1], "explained": [[0.5, 0.5]] * T}
    written = plots.write_stage_figures(tmp_path, "test", neurons, hists, preds, pca)
    assert set(written) == {"test_membrane_a", "test_firing_rate", "test_predictions", "test_logit_pca"}
    for p in written.values():
        assert p.parent == tmp_path and p.name.endswith(".png")
        assert_png(p)
    assert plots.write_stage_figures(tmp_path, "val") == {}


def test_spread():
    assert plots.spread(list("abcdefg"), 3) == ["a", "d", "g"]
    assert plots.spread(list("ab"), 6) == ["a", "b"]
