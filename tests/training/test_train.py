import copy
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

import dilated_rnn.training.train
from dilated_rnn.data.mnist import pixel_permutation
from dilated_rnn.data.transform import InputTransform
from dilated_rnn.errors import ParameterError, UserError
from dilated_rnn.model import DilatedRNNClassifier, ModelConfig
from dilated_rnn.training.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from dilated_rnn.training.evaluate import evaluate
from dilated_rnn.training.train import TrainConfig, TrainingDiverged, train

TINY = ModelConfig(hidden_sizes=(8, 8, 8), dilations=(1, 4, 16), cell="lstm")


def _cfg(**kw):
    return TrainConfig(**{"steps": 12, "batch_size": 32, "eval_every": 6, "log_every": 3, "lr": 3e-3, **kw})


def _weights(path):
    return load_checkpoint(path)["model"]


def test_training_runs_logs_checkpoints_and_reports(tmp_path, small_mnist):
    result = train(tmp_path / "run", small_mnist, TINY, _cfg(), device="cpu", progress=False)
    assert result["finished"] and result["step"] == 12
    assert 0.0 <= result["test"]["accuracy"] <= 1.0 and result["test"]["num_examples"] == 200
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == [".lock", "best.pt", "config.json", "last.pt", "metrics.jsonl", "test.json"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6, 9, 12]
    assert [("val_accuracy" in r) for r in records] == [False, True, False, True]
    assert json.loads((tmp_path / "run" / "test.json").read_text())["test"] == result["test"]


def test_loss_falls_on_real_digits(tmp_path, small_mnist):
    cfg = _cfg(steps=60, eval_every=60, log_every=20, lr=1e-2, optimizer="adam")
    train(tmp_path / "run", small_mnist, ModelConfig(hidden_sizes=(16,), dilations=(1,), cell="gru"), cfg,
          device="cpu", progress=False)
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.1


def test_same_seed_same_weights(tmp_path, small_mnist):
    for name in ("a", "b"):
        train(tmp_path / name, small_mnist, TINY, _cfg(steps=6), device="cpu", progress=False)
    for key, value in _weights(tmp_path / "a" / "last.pt").items():
        assert torch.equal(value, _weights(tmp_path / "b" / "last.pt")[key])
    train(tmp_path / "c", small_mnist, TINY, _cfg(steps=6, seed=5), device="cpu", progress=False)
    assert not torch.equal(_weights(tmp_path / "c" / "last.pt")["head.weight"],
                           _weights(tmp_path / "a" / "last.pt")["head.weight"])


@pytest.mark.parametrize("permute, recipe", [
    (False, {"optimizer": "rmsprop", "momentum": 0.9}),
    # two parameter groups (decayed matrices, bare vectors); the decay starts after the first resume
    (True, {"optimizer": "adam", "weight_decay": 0.1, "weight_decay_start": 7}),
    # dropout masks come from the torch RNG, which the checkpoint carries; the weight average travels too
    (False, {"optimizer": "adam", "dropout": 0.3, "ema": 0.9}),
    # sharpness-aware steps from step 7, after the first resume
    (True, {"optimizer": "adam", "weight_decay": 0.1, "weight_decay_start": 3, "sam": 0.05, "sam_start": 7}),
])
def test_resume_equals_uninterrupted(tmp_path, small_mnist, permute, recipe):
    dropout = recipe.pop("dropout", 0.0)  # the model's setting; the rest are training settings
    model_config = dataclasses.replace(TINY, dropout=dropout)
    cfg = _cfg(permute=permute, schedule="cosine", warmup=2, clip=1.0, **recipe)
    train(tmp_path / "whole", small_mnist, model_config, cfg, device="cpu", progress=False)
    part = train(tmp_path / "split", small_mnist, model_config, cfg, device="cpu", progress=False, stop_after=5)
    assert not part["finished"] and load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 5
    train(tmp_path / "split", small_mnist, device="cpu", resume=True, progress=False, stop_after=4)
    train(tmp_path / "split", small_mnist, device="cpu", resume=True, progress=False)
    whole, split = (load_checkpoint(tmp_path / r / "last.pt") for r in ("whole", "split"))
    for key, value in whole["model"].items():
        assert torch.equal(value, split["model"][key]), key
    for key, value in whole.get("ema", {}).items():
        assert torch.equal(value, split["ema"][key]), key
    assert ("ema" in whole) == ("ema" in split) == bool(recipe.get("ema"))
    assert whole["best"] == split["best"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9, 12]


def test_resume_before_the_first_log(tmp_path, small_mnist):
    cfg = _cfg(steps=4, eval_every=4, log_every=4)
    train(tmp_path / "run", small_mnist, TINY, cfg, device="cpu", progress=False, stop_after=2)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stopped before anything was logged
    assert train(tmp_path / "run", small_mnist, device="cpu", resume=True, progress=False)["finished"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4]


def test_a_finished_run_resumed_with_more_steps_is_the_longer_run(tmp_path, small_mnist):
    """At a constant learning rate, --resume --steps N continues a finished run into the N-step run."""
    train(tmp_path / "whole", small_mnist, TINY, _cfg(steps=12), device="cpu", progress=False)
    assert train(tmp_path / "short", small_mnist, TINY, _cfg(steps=6), device="cpu", progress=False)["finished"]
    longer = train(tmp_path / "short", small_mnist, device="cpu", resume=True, progress=False, steps=12)
    assert longer["finished"] and longer["step"] == 12
    whole, short = (load_checkpoint(tmp_path / r / "last.pt") for r in ("whole", "short"))
    for key, value in whole["model"].items():
        assert torch.equal(value, short["model"][key]), key
    assert json.loads((tmp_path / "short" / "config.json").read_text())["train"]["steps"] == 12
    logged = [json.loads(line)["step"] for line in (tmp_path / "short" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [3, 6, 9, 12]
    train(tmp_path / "cosine", small_mnist, TINY, _cfg(steps=6, schedule="cosine"), device="cpu", progress=False)
    with pytest.raises(ParameterError, match="constant learning rate"):
        train(tmp_path / "cosine", small_mnist, device="cpu", resume=True, progress=False, steps=12)
    with pytest.raises(ParameterError, match="at least the 12 steps"):
        train(tmp_path / "short", small_mnist, device="cpu", resume=True, progress=False, steps=8)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_weight_decay_starts_at_its_step(tmp_path, small_mnist, optimizer):
    def run(name, **kw):
        cfg = _cfg(steps=8, eval_every=4, log_every=4, optimizer=optimizer, **kw)
        train(tmp_path / name, small_mnist, TINY, cfg, device="cpu", progress=False, stop_after=4)
        before = _weights(tmp_path / name / "last.pt")
        train(tmp_path / name, small_mnist, device="cpu", resume=True, progress=False)
        return before, _weights(tmp_path / name / "last.pt")

    bare_4, bare_8 = run("bare")
    late_4, late_8 = run("late", weight_decay=0.5, weight_decay_start=4)
    early_4, _ = run("early", weight_decay=0.5)
    for key in bare_4:  # no decay in steps 0..3, so the first four steps are the undecayed run's
        assert torch.equal(late_4[key], bare_4[key]), key
    for key in ("head.weight", "rnn.layers.0.weight_ih_l0"):  # decay from step 0, and after step 4: matrices differ
        assert not torch.equal(early_4[key], bare_4[key]) and not torch.equal(late_8[key], bare_8[key]), key


def test_label_smoothing_trains_on_the_smoothed_cross_entropy(small_mnist):
    x = small_mnist["train"].x[:16, ::8]  # 98 steps: fast
    y = small_mnist["train"].labels[:16]
    eps, K = 0.2, 10
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        models.append(DilatedRNNClassifier.from_config(TINY))
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in models]
    loss = dilated_rnn.training.train.train_step(models[0], opts[0], x, y, label_smoothing=eps)
    # Straight from the definition: targets (1 - eps) on the label plus eps / K on every class.
    target = torch.full((16, K), eps / K)
    target[torch.arange(16), y] += 1 - eps
    expected = -(target * torch.log_softmax(models[1](x), dim=1)).sum(1).mean()
    expected.backward()
    opts[1].step()
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    plain = torch.nn.functional.cross_entropy(models[0](x), y).item()
    assert dilated_rnn.training.train.train_step(models[0], opts[0], x, y) == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_sharpness_aware_step_follows_the_definition(small_mnist, cell):
    x = small_mnist["train"].x[:16, ::8]  # 98 steps: fast
    y = small_mnist["train"].labels[:16]
    config = ModelConfig(hidden_sizes=(8, 8, 8), dilations=(1, 4, 16), cell=cell)
    rho, clip = 0.05, 0.5
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        models.append(DilatedRNNClassifier.from_config(config))
    start = copy.deepcopy(models[0].state_dict())
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    loss = dilated_rnn.training.train.train_step(models[0], opts[0], x, y, clip=clip, sam=rho)
    # Straight from the definition, on a separate copy: e = rho g / ||g|| at w, the gradient at w + e,
    # clipped, applied at w.
    model = models[1]
    clean = torch.nn.functional.cross_entropy(model(x), y)
    g = torch.autograd.grad(clean, list(model.parameters()))
    norm = torch.sqrt(sum((gi.double() ** 2).sum() for gi in g))
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for q, gi in zip(perturbed.parameters(), g):
            q += rho * gi / norm.float()
    sharp = torch.nn.functional.cross_entropy(perturbed(x), y)
    for p, gi in zip(model.parameters(), torch.autograd.grad(sharp, list(perturbed.parameters()))):
        p.grad = gi
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opts[1].step()
    assert loss == pytest.approx(clean.item(), rel=1e-6) and sharp.item() > clean.item()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # ... which is not a plain step from the same start
    torch.manual_seed(3)
    plain = DilatedRNNClassifier.from_config(config)
    plain.load_state_dict(start)
    dilated_rnn.training.train.train_step(plain, torch.optim.Adam(plain.parameters(), lr=1e-2), x, y, clip=clip)
    assert not torch.allclose(plain.head.weight, models[0].head.weight, atol=1e-4)


def test_a_run_trains_on_its_label_smoothing_and_sam_from_its_start(tmp_path, small_mnist, monkeypatch):
    seen = []
    real_step = dilated_rnn.training.train.train_step

    def spy(*args, **kwargs):
        seen.append(args[5:])  # label smoothing, SAM radius
        return real_step(*args, **kwargs)

    monkeypatch.setattr(dilated_rnn.training.train, "train_step", spy)
    train(tmp_path / "run", small_mnist, TINY, _cfg(steps=3, label_smoothing=0.3, sam=0.05, sam_start=1),
          device="cpu", progress=False)
    assert seen == [(0.3, 0.0), (0.3, 0.05), (0.3, 0.05)]


@pytest.mark.parametrize("init, forget_bias", [("orthogonal", 1.0), ("tf", 2.5), ("orthogonal", 2.5)])
def test_a_run_starts_from_the_initialisation_it_names(tmp_path, small_mnist, init, forget_bias):
    cfg = _cfg()
    config = dataclasses.replace(TINY, init=init, forget_bias=forget_bias)
    train(tmp_path / "run", small_mnist, config, cfg, device="cpu", progress=False, stop_after=0)
    start = _weights(tmp_path / "run" / "last.pt")  # saved before any step
    torch.manual_seed(cfg.seed)  # the initial weights, from the seed, as the config says
    model = DilatedRNNClassifier.from_config(TINY)
    torch.manual_seed(cfg.seed)
    model.rnn.reset_parameters(init, forget_bias)
    for key, value in model.state_dict().items():
        assert torch.equal(start[key], value), key
    torch.manual_seed(cfg.seed)
    default = DilatedRNNClassifier.from_config(TINY).state_dict()
    changed = [k for k in default if not torch.equal(default[k], start[k])]
    assert changed and all(k.startswith("rnn.") for k in changed)  # the head is drawn as always
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert (stored["init"], stored["forget_bias"]) == (init, forget_bias)
    assert model_from_checkpoint(load_checkpoint(tmp_path / "run" / "last.pt")).config == config


def test_forget_bias_on_a_cell_without_one_is_a_clear_error_before_anything_is_written(tmp_path, small_mnist):
    with pytest.raises(UserError, match="forget_bias applies to LSTM cells only, not gru"):
        train(tmp_path / "run", small_mnist, ModelConfig(hidden_sizes=(8,), dilations=(1,), cell="gru",
                                                         forget_bias=2.0), _cfg(), device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


def test_permutation_travels_in_the_checkpoint(tmp_path, small_mnist):
    train(tmp_path / "p", small_mnist, TINY, _cfg(steps=6, permute=True), device="cpu", progress=False)
    ckpt = load_checkpoint(tmp_path / "p" / "best.pt")
    assert ckpt["train_config"]["permute"] is True
    assert torch.equal(ckpt["permutation"], pixel_permutation(ckpt["train_config"]["seed"]))
    model = model_from_checkpoint(ckpt)  # the stored permutation is the one the run validated with
    record = [json.loads(line) for line in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()][-1]
    assert evaluate(model, small_mnist["val"], InputTransform(ckpt["permutation"]))["loss"] == pytest.approx(record["val_loss"], rel=1e-6)
    assert abs(evaluate(model, small_mnist["val"], None)["loss"] - record["val_loss"]) > 1e-4  # float noise: ~1e-7


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_state(tmp_path, small_mnist, monkeypatch):
    real_step = dilated_rnn.training.train.train_step
    calls = []

    def step_then_nan(*args, **kwargs):
        calls.append(1)
        loss = real_step(*args, **kwargs)
        return float("nan") if len(calls) > 7 else loss

    monkeypatch.setattr(dilated_rnn.training.train, "train_step", step_then_nan)
    with pytest.raises(TrainingDiverged, match="loss nan at step 8"):
        train(tmp_path / "d", small_mnist, TINY, _cfg(), device="cpu", progress=False)
    assert load_checkpoint(tmp_path / "d" / "last.pt")["step"] == 6


def test_refuses_to_overwrite_a_run(tmp_path, small_mnist):
    train(tmp_path / "r", small_mnist, TINY, _cfg(steps=6), device="cpu", progress=False)
    with pytest.raises(UserError, match="r: already holds a run; resume it or choose another run directory"):
        train(tmp_path / "r", small_mnist, TINY, _cfg(steps=6), device="cpu", progress=False)


def test_weight_average_is_what_is_validated_kept_and_tested(tmp_path, small_mnist):
    cfg = _cfg(steps=6, eval_every=6, log_every=6, optimizer="adam", ema=0.5)
    trained = []  # the trained weights after each step, one step per call
    for _ in range(cfg.steps):
        train(tmp_path / "run", small_mnist, TINY, cfg, device="cpu", progress=False, stop_after=1,
              resume=bool(trained))
        trained.append(_weights(tmp_path / "run" / "last.pt"))
    last, best = load_checkpoint(tmp_path / "run" / "last.pt"), load_checkpoint(tmp_path / "run" / "best.pt")
    torch.manual_seed(cfg.seed)  # the initial weights, as a new run draws them
    expected = DilatedRNNClassifier.from_config(TINY).state_dict()
    for updates, weights in enumerate(trained):
        rate = min(0.5, (1 + updates) / (10 + updates))
        expected = {k: rate * v + (1 - rate) * weights[k] for k, v in expected.items()}
    for key, value in expected.items():
        torch.testing.assert_close(last["ema"][key], value, rtol=1e-6, atol=1e-6)
        assert torch.equal(best["model"][key], last["ema"][key]), key  # the one validation: step 6
    assert "ema" not in best  # best.pt holds the validated weights once
    assert not torch.equal(last["model"]["head.weight"], last["ema"]["head.weight"])
    report = json.loads((tmp_path / "run" / "test.json").read_text())
    averaged = model_from_checkpoint(best)
    assert report["test"] == evaluate(averaged, small_mnist["test"], None, cfg.eval_batch_size, "cpu")
    record = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert record["val_accuracy"] == evaluate(averaged, small_mnist["val"], None, 1000, "cpu")["accuracy"]


def test_resume_of_an_averaging_run_without_its_average_is_a_clear_error(tmp_path, small_mnist):
    train(tmp_path / "run", small_mnist, TINY, _cfg(ema=0.9), device="cpu", progress=False, stop_after=6)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    del state["ema"]
    save_checkpoint(tmp_path / "run" / "last.pt", state)
    with pytest.raises(UserError, match="last.pt: the run averages its weights .* but the checkpoint has no average"):
        train(tmp_path / "run", small_mnist, device="cpu", resume=True, progress=False)


@pytest.mark.parametrize("select_ties, kept_step", [("earliest", 3), ("loss", 9)])
def test_ties_at_the_best_accuracy_go_where_select_ties_says(tmp_path, small_mnist, monkeypatch, select_ties,
                                                             kept_step):
    real_evaluate = dilated_rnn.training.train.evaluate
    scores = iter([(0.5, 0.9), (0.5, 0.8), (0.5, 0.7), (0.4, 0.1)])  # steps 3, 6, 9, 12: a tie, then worse

    def scripted(*args, **kwargs):
        report = real_evaluate(*args, **kwargs)
        if args[1] is small_mnist["val"]:
            report["accuracy"], report["loss"] = next(scores)
        return report

    monkeypatch.setattr(dilated_rnn.training.train, "evaluate", scripted)
    result = train(tmp_path / "run", small_mnist, TINY, _cfg(eval_every=3, select_ties=select_ties), device="cpu",
                   progress=False)
    assert result["best"]["step"] == kept_step and load_checkpoint(tmp_path / "run" / "best.pt")["step"] == kept_step


def test_drnn_train_leaves_the_objects_alive_before_its_loop_out_of_collections(tmp_path):
    """``drnn train`` freezes what the imports and the data made (hundreds of thousands of objects), so the
    collector's full passes during training skip them; a process that only imports the package freezes nothing."""
    code = ("import gc, sys\n"
            "from dilated_rnn.cli import main\n"
            "if sys.argv[1] == 'train':\n"
            "    assert main(['train', '--data', 'copy:5', '--cell', 'rnn', '--hidden-sizes', '4', '--dilations', '1,2',\n"
            "                 '--steps', '2', '--eval-every', '2', '--no-progress', '--run-dir', sys.argv[2]]) == 0\n"
            "print(gc.get_freeze_count())\n")
    counts = {mode: int(subprocess.run([sys.executable, "-c", code, mode, str(tmp_path / "run")], capture_output=True,
                                       text=True, check=True).stdout.strip().splitlines()[-1])
              for mode in ("import", "train")}
    assert counts["import"] == 0 and counts["train"] > 100_000, counts


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator policy")
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    """A 64 MB array freed and allocated again: fresh pages (faulted in one by one) by default, the same
    heap pages once ``keep_freed_memory`` has run (in a subprocess: it changes the process's policy)."""
    code = ("import resource, sys, numpy as np\n"
            "from dilated_rnn.training.train import keep_freed_memory\n"
            "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
            "def faults():\n"
            "    a = np.empty(16 << 20, np.float32); a.fill(1.0); del a\n"
            "faults()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "faults()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    counts = {mode: int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "keep")}
    assert counts["keep"] < 100 and counts["default"] > 10 * max(counts["keep"], 1), counts
