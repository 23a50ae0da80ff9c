"""Time-series classification beside the field's baselines, run side by side on the same splits.

For each data set (a bundled archive set ``ucr:NAME``, or ``NAME`` in a folder of the UCR 2018 archive's
``NAME_TRAIN.tsv`` / ``NAME_TEST.tsv``): ours, ``drnn train --data`` with no other flag (the recipe of
``training/recipe.py``: every training sequence trains, the last step is kept, the test split is read once per
run) for each seed, and optionally (method ``ensemble``) an ensemble of K members (``drnn train --ensemble K
--seed S``, five unless asked otherwise). Where no validation split is drawn, member i of that ensemble is the
single run of seed S + i (the same data, config and seed), so the ensemble runs first and its members stand for
those seeds' single runs. Then 1-NN DTW with a full window (sktime's ``KNeighborsTimeSeriesClassifier``); and
MiniRocket (sktime's ``RocketClassifier``, its MiniRocket transform and a ridge classifier). Each method's
test accuracy and wall time per set; then, over the sets, means, mean ranks, and ours' wins, ties and losses
against each baseline. Results are kept in a JSON file as they come, so an interrupted panel resumes.

The baselines see the data as the files give it (the archive's sets are mostly z-normalized already);
sequences of unequal length are padded at the end with their last value for MiniRocket, which needs one length.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import atomic_path, write_json

METHODS = ("ours", "dtw", "minirocket")
PEERS = METHODS[1:]
ENSEMBLE = "ensemble"  # an optional method: ours as an ensemble of members (ENSEMBLE_SIZE by default), one seed
ENSEMBLE_SIZE = 5
NAMES = {"ours": "ours", ENSEMBLE: "ensemble", "dtw": "DTW", "minirocket": "MiniRocket"}


def resolve_set(name: str, ucr_dir: Path | None) -> str:
    """A set's spec: ``ucr:NAME`` where sktime bundles it, else ``UCR_DIR/NAME_TRAIN.tsv``."""
    from ..data.readers import sktime_data_dir

    if (sktime_data_dir() / name / f"{name}_TRAIN.ts").is_file():
        return f"ucr:{name}"
    if ucr_dir is not None and (Path(ucr_dir) / f"{name}_TRAIN.tsv").is_file():
        return str(Path(ucr_dir) / f"{name}_TRAIN.tsv")
    raise UserError(f"{name}: neither bundled with sktime nor in {ucr_dir} as {name}_TRAIN.tsv")


def run_ours(spec: str, seed: int, threads: int = 1, members: int = 1) -> dict:
    """One run of the default recipe (``members`` > 1: ``drnn train --ensemble``): test accuracy, steps, seconds."""
    import torch

    from ..data.datasets import default_dilations, load_dataset
    from ..training.ensemble import train_ensemble
    from ..training.recipe import configs
    from ..training.train import train

    torch.set_num_threads(threads)
    start = time.perf_counter()
    dataset = load_dataset(spec, seed=seed)
    model_config, cfg = configs(dataset, default_dilations(dataset.train_max_length), {"seed": seed, "data": spec})
    with tempfile.TemporaryDirectory() as tmp:
        if members > 1:
            result = train_ensemble(Path(tmp) / "run", dataset, model_config, cfg, members, "cpu", False, quiet=True)
        else:
            result = train(Path(tmp) / "run", dataset, model_config, cfg, device="cpu", progress=False, quiet=True)
    out = {"accuracy": result["test"]["accuracy"], "val_accuracy": result["best"]["val_accuracy"],
           "best_step": result["best"]["step"], "steps": cfg.steps, "members": members,
           "seconds": time.perf_counter() - start}
    if members > 1 and not len(dataset.splits["val"]):  # each member is the single run of its seed
        out["member_runs"] = [{"seed": seed + i, "accuracy": t["accuracy"], "val_accuracy": None,
                               "best_step": b["step"], "steps": cfg.steps, "seconds": s, "member_of_ensemble": True}
                              for i, (t, b, s) in enumerate(zip(result["member_tests"], result["member_best"],
                                                                result["member_seconds"]))]
    return out


def _arrays(spec: str):
    """(train sequences, train labels, test sequences, test labels) as the file gives them, whole training split."""
    from ..data.datasets import load_dataset

    data = load_dataset(spec, val_fraction=0.0, normalize="none")
    as_lists = lambda split: (split.sequences(), split.labels.numpy())  # noqa: E731
    return (*as_lists(data["train"]), *as_lists(data["test"]))


def _panel3d(sequences, length: int) -> np.ndarray:
    """[N, C, T] (sktime's numpy3D), each sequence padded at the end with its last value to ``length``."""
    out = np.empty((len(sequences), sequences[0].shape[1], length), np.float64)
    for i, s in enumerate(sequences):
        out[i, :, : len(s)] = s.T
        out[i, :, len(s):] = s[-1][:, None]
    return out


def run_baseline(spec: str, method: str, seed: int = 0) -> dict:
    """1-NN DTW (full window) or MiniRocket on the set's default split: test accuracy and seconds."""
    from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier
    from sktime.classification.kernel_based import RocketClassifier

    x_train, y_train, x_test, y_test = _arrays(spec)
    length = max(len(s) for s in x_train + x_test)
    start = time.perf_counter()
    if method == "dtw":
        clf = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
    else:
        clf = RocketClassifier(rocket_transform="minirocket", random_state=seed)
    clf.fit(_panel3d(x_train, length), y_train)
    predicted = clf.predict(_panel3d(x_test, length))
    return {"accuracy": float(np.mean(predicted == y_test)), "seconds": time.perf_counter() - start}


def summarize(results: dict) -> dict:
    """Over the sets every method has: means, mean ranks (1 best, ties shared) and ours' wins, ties, losses
    against each peer (``vs_PEER``), and the ensemble's (``ensemble_vs_PEER``) where every such set has one."""
    sets = [s for s, r in results.items() if all(m in r for m in METHODS)]
    methods = METHODS + ((ENSEMBLE,) if sets and all(ENSEMBLE in results[s] for s in sets) else ())
    accuracy = {m: {s: _mean(results[s][m]) for s in sets} for m in methods}
    ranks = {m: [] for m in methods}
    for s in sets:
        scores = {m: accuracy[m][s] for m in methods}
        for m in methods:
            ranks[m].append(1 + sum(v > scores[m] for v in scores.values()) + 0.5 * (
                sum(v == scores[m] for v in scores.values()) - 1))
    summary = {"sets": sets, "mean_accuracy": {m: statistics.fmean(accuracy[m].values()) if sets else None
                                               for m in methods},
               "mean_rank": {m: statistics.fmean(ranks[m]) if sets else None for m in methods}}
    for ours in (m for m in ("ours", ENSEMBLE) if m in methods):
        for peer in PEERS:
            diffs = [accuracy[ours][s] - accuracy[peer][s] for s in sets]
            summary[f"{'' if ours == 'ours' else ours + '_'}vs_{peer}"] = {
                "wins": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs),
                "losses": sum(d < 0 for d in diffs)}
    return summary


def _mean(entry) -> float:
    """A method's accuracy on a set (the mean over seeds), to 6 places: ours are float32 counts, the baselines'
    float64, and 17/20 must tie with 17/20 (accuracies differ by at least one test sequence, 1/N)."""
    return round(statistics.fmean(r["accuracy"] for r in entry) if isinstance(entry, list) else entry["accuracy"], 6)


def markdown(results: dict) -> str:
    """The table: accuracy per set and method (ours: mean ± std over seeds), seconds, then the summary."""
    sizes = sorted({r[ENSEMBLE].get("members", ENSEMBLE_SIZE) for r in results.values() if ENSEMBLE in r})
    sizes = sizes or [ENSEMBLE_SIZE]
    lines = [f"| set | ours | ours, {'/'.join(map(str, sizes))}-member ensemble | DTW | MiniRocket | seconds: ours "
             "(per seed) / ensemble / DTW / MiniRocket |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        ours = r.get("ours", [])
        acc = [x["accuracy"] for x in ours]
        cell = (f"{statistics.fmean(acc):.3f} ± {statistics.pstdev(acc):.3f}" if len(acc) > 1
                else f"{acc[0]:.3f}" if acc else "–")
        base = lambda m: f"{r[m]['accuracy']:.3f}" if m in r else "–"  # noqa: E731
        secs = lambda m: f"{r[m]['seconds']:.0f}" if "seconds" in r.get(m, {}) else "–"  # noqa: E731
        ours_s = f"{statistics.fmean(x['seconds'] for x in ours):.0f}" if ours and "seconds" in ours[0] else "–"
        lines.append(f"| {name} | {cell} | {base(ENSEMBLE)} | {base('dtw')} | {base('minirocket')} | {ours_s} / "
                     f"{secs(ENSEMBLE)} / {secs('dtw')} / {secs('minirocket')} |")
    s = summarize(results)
    if s["sets"]:
        count = lambda key: "/".join(str(s[key][k]) for k in ("wins", "ties", "losses"))  # noqa: E731
        against = lambda prefix: ", ".join(f"against {NAMES[p]} {count(prefix + 'vs_' + p)}" for p in PEERS)  # noqa: E731
        lines += ["", f"Over {len(s['sets'])} sets: mean accuracy " + ", ".join(
            f"{NAMES[m]} {s['mean_accuracy'][m]:.3f}" for m in s["mean_accuracy"]) + "; mean rank " + ", ".join(
            f"{NAMES[m]} {s['mean_rank'][m]:.2f}" for m in s["mean_rank"]) + f"; ours {against('')}" + (
            f"; the ensemble {against('ensemble_')}" if ENSEMBLE in s["mean_rank"] else "") + " (wins/ties/losses)."]
    return "\n".join(lines)


def run_panel(names, out: Path, ucr_dir: Path | None = None, seeds=(1, 2, 3), methods=METHODS, threads: int = 1,
              say=lambda line: None, members: int = ENSEMBLE_SIZE) -> dict:
    """Every method on every set (the ensemble of ``members``), resumed from ``out`` (JSON) where it holds results
    already; ``out`` is rewritten after each result, with ``out``'s ``.md`` twin (the table) beside it."""
    out = Path(out)
    results = json.loads(out.read_text())["results"] if out.is_file() else {}
    for name in names:
        spec = resolve_set(name, ucr_dir)
        entry = results.setdefault(name, {"spec": spec})
        for method in sorted(methods, key=lambda m: m != ENSEMBLE):  # the ensemble first: its members are singles
            if method == "ours":
                runs = {r["seed"]: r for r in entry.get(ENSEMBLE, {}).get("member_runs", [])}
                done = {r["seed"] for r in entry.get("ours", [])}
                taken = [runs[s] for s in seeds if s in runs and s not in done]
                if taken:
                    entry.setdefault("ours", []).extend(taken)
                    _save(out, results)
                done = {r["seed"] for r in entry.get("ours", [])}
                for seed in (s for s in seeds if s not in done):
                    entry.setdefault("ours", []).append({"seed": seed, **run_ours(spec, seed, threads)})
                    _save(out, results)
                    say(f"{name} ours seed {seed}: {entry['ours'][-1]['accuracy']:.3f}")
            elif method == ENSEMBLE and method not in entry:
                entry[method] = run_ours(spec, seeds[0], threads, members)
                _save(out, results)
                say(f"{name} ensemble of {members}: {entry[method]['accuracy']:.3f}")
            elif method not in entry:
                entry[method] = run_baseline(spec, method)
                _save(out, results)
                say(f"{name} {method}: {entry[method]['accuracy']:.3f}")
    return results


def _save(out: Path, results: dict) -> None:
    write_json(out, {"results": results, "summary": summarize(results)})
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(results) + "\n")
