"""The side-by-side panel: .tsv sets of the UCR 2018 format, the baselines on a real split, the summary's counts,
and a panel that resumes from its JSON."""

import json

import numpy as np
import pytest

from dilated_rnn.data.datasets import load_dataset
from dilated_rnn.tools import tsc


def _tsv(path, x, y):
    rows = []
    for label, seq in zip(y, x):
        rows.append("\t".join([str(label)] + [f"{v:.6f}" for v in seq]))
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def ucr_dir(tmp_path):
    """A two-class set in the archive's format, unequal lengths padded with NaN."""
    rng = np.random.default_rng(0)
    for split, n in (("TRAIN", 20), ("TEST", 10)):
        y = np.arange(n) % 2 + 1
        x = rng.normal(size=(n, 30)) + 2 * (y[:, None] == 2) * np.sin(np.linspace(0, 6, 30))
        x[::3, 25:] = np.nan  # every third sequence 25 steps long
        _tsv(tmp_path / f"Toy_{split}.tsv", x, y)
    return tmp_path


def test_a_tsv_set_loads_with_its_lengths_and_labels(ucr_dir):
    data = load_dataset(str(ucr_dir / "Toy_TRAIN.tsv"))
    assert data.classes == ("1", "2") and data.num_features == 1 and data.max_length == 30
    assert {25, 30} == data["test"].length_set() and len(data["test"]) == 10


def test_baselines_run_on_the_default_split(ucr_dir):
    spec = tsc.resolve_set("Toy", ucr_dir)
    for method in ("dtw", "minirocket"):
        r = tsc.run_baseline(spec, method)
        assert 0.5 <= r["accuracy"] <= 1 and r["seconds"] > 0
    assert tsc.resolve_set("GunPoint", None) == "ucr:GunPoint"
    with pytest.raises(tsc.UserError, match="Nope: neither bundled"):
        tsc.resolve_set("Nope", ucr_dir)


def test_summary_counts_wins_ties_losses_and_ranks():
    results = {"a": {"ours": [{"accuracy": 0.9}, {"accuracy": 0.8}], "dtw": {"accuracy": 0.8},
                     "minirocket": {"accuracy": 0.9}},
               "b": {"ours": [{"accuracy": 0.7}], "dtw": {"accuracy": 0.7}, "minirocket": {"accuracy": 0.6}},
               "c": {"ours": [{"accuracy": 0.5}], "dtw": {"accuracy": 0.6}}}  # incomplete: left out
    s = tsc.summarize(results)
    assert s["sets"] == ["a", "b"] and s["mean_accuracy"]["ours"] == pytest.approx(0.775)
    assert s["vs_dtw"] == {"wins": 1, "ties": 1, "losses": 0} and s["vs_minirocket"] == {"wins": 1, "ties": 0,
                                                                                          "losses": 1}
    assert s["mean_rank"]["ours"] == pytest.approx((2 + 1.5) / 2) and s["mean_rank"]["minirocket"] == 2
    assert "| a | 0.850 ± 0.050 | – | 0.800 | 0.900 |" in tsc.markdown(results)
    assert "ensemble_vs_dtw" not in s  # not every set has one
    tie = {"ours": [{"accuracy": float(np.float32(17 / 20))}], "dtw": {"accuracy": 17 / 20},
           "minirocket": {"accuracy": 0.9}}
    assert tsc.summarize({"t": tie})["vs_dtw"]["ties"] == 1  # float32 against float64: the same count, a tie
    results["a"]["ensemble"], results["b"]["ensemble"] = {"accuracy": 0.95}, {"accuracy": 0.65}
    s = tsc.summarize(results)
    assert s["mean_accuracy"]["ensemble"] == pytest.approx(0.8) and s["mean_rank"]["ensemble"] == (1 + 3) / 2
    assert s["ensemble_vs_dtw"] == {"wins": 1, "ties": 0, "losses": 1} and s["vs_dtw"]["wins"] == 1
    assert "; the ensemble against DTW 1/0/1, against MiniRocket 2/0/0 (wins/ties/losses)." in tsc.markdown(results)


def test_a_panel_resumes_from_its_json(ucr_dir, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tsc, "run_ours", lambda spec, seed, threads: calls.append(seed) or {"accuracy": 0.5 + seed / 10,
                                                                                            "seconds": 1.0})
    out = tmp_path / "panel.json"
    tsc.run_panel(["Toy"], out, ucr_dir, seeds=(1,), methods=("ours", "dtw"))
    tsc.run_panel(["Toy"], out, ucr_dir, seeds=(1, 2), methods=("ours", "dtw"))
    assert calls == [1, 2]  # seed 1 and DTW were not run again
    saved = json.loads(out.read_text())["results"]["Toy"]
    assert [r["seed"] for r in saved["ours"]] == [1, 2] and "accuracy" in saved["dtw"]
    assert out.with_suffix(".md").read_text().startswith("| set | ours |")


def test_the_ensembles_members_stand_for_the_single_runs_of_their_seeds(ucr_dir, tmp_path, monkeypatch):
    """With no validation split drawn, member i of ``--ensemble 5 --seed S`` is the single run of seed S + i."""
    spec = tsc.resolve_set("Toy", ucr_dir)
    ensemble = tsc.run_ours(spec, 1, members=2)
    assert ensemble["members"] == 2 and [r["seed"] for r in ensemble["member_runs"]] == [1, 2]
    assert tsc.run_ours(spec, 2)["accuracy"] == ensemble["member_runs"][1]["accuracy"]
    for name in ("Toy", "Twin"):  # two sets: each set's ensemble of the members asked for
        for split in ("TRAIN", "TEST"):
            (ucr_dir / f"{name}_{split}.tsv").write_bytes((ucr_dir / f"Toy_{split}.tsv").read_bytes())
    asked = []
    monkeypatch.setattr(tsc, "run_ours", lambda spec, seed, threads, members=1: asked.append(members) or {
        **ensemble, "accuracy": 0.75})
    out = tmp_path / "panel.json"
    tsc.run_panel(["Toy", "Twin"], out, ucr_dir, seeds=(1, 2), methods=("ours", "ensemble"), members=2)
    saved = json.loads(out.read_text())["results"]
    assert asked == [2, 2]  # the singles came from the members: no run of their own
    for name in ("Toy", "Twin"):
        assert [r["seed"] for r in saved[name]["ours"]] == [1, 2] and saved[name]["ensemble"]["accuracy"] == 0.75
    assert "2-member ensemble" in out.with_suffix(".md").read_text()
