import math

import pytest
import torch

from dilated_rnn.training.optim import (
    TFRMSprop,
    lr_factor,
    make_optimizer,
    update_average,
)


def test_tf_rmsprop_matches_the_tensorflow_update_rule():
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(5))
    ref = p.detach().clone()
    ms, mom = torch.ones(5), torch.zeros(5)
    opt = TFRMSprop([p], lr=0.01, decay=0.9, momentum=0.5, eps=1e-10)
    for _ in range(4):
        g = torch.randn(5)
        p.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g * g
        mom = 0.5 * mom + 0.01 * g / torch.sqrt(ms + 1e-10)
        ref = ref - mom
    torch.testing.assert_close(p.detach(), ref)


def test_first_step_is_small_because_mean_square_starts_at_one():
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.tensor([1e-3])
    TFRMSprop([p], lr=0.1).step()
    # torch.optim.RMSprop would move by about lr / sqrt(0.1) = 0.32; TF moves by lr * g / sqrt(0.9)
    assert p.item() == pytest.approx(-0.1 * 1e-3 / math.sqrt(0.9 + 0.1 * 1e-6 + 1e-10), rel=1e-6)


def test_make_optimizer_and_unknown_name():
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert isinstance(make_optimizer("rmsprop", params, 1e-3), TFRMSprop)
    assert isinstance(make_optimizer("adam", params, 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="optimizer must be one of rmsprop, adam, got 'sgd'"):
        make_optimizer("sgd", params, 1e-3)


def test_decoupled_weight_decay_shrinks_matrices_only():
    """wd > 0: each matrix shrinks by lr * wd before the optimizer's own update; vectors (biases) do not."""
    torch.manual_seed(2)
    w, b = torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(4))
    w_plain, b_plain = (torch.nn.Parameter(t.detach().clone()) for t in (w, b))
    lr, wd = 0.01, 0.5
    decayed = make_optimizer("rmsprop", [w, b], lr, weight_decay=wd)
    plain = make_optimizer("rmsprop", [w_plain, b_plain], lr)
    before = w.detach().clone()
    for p, q in ((w, w_plain), (b, b_plain)):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    decayed.step()
    plain.step()
    torch.testing.assert_close(b.detach(), b_plain.detach())
    # the plain step moved w_plain by delta; the decayed one applies the same delta to the shrunk weights
    torch.testing.assert_close(w.detach(), before * (1 - lr * wd) + (w_plain.detach() - before))


def test_adam_weight_decay_is_adamw_and_zero_decay_is_plain_adam():
    torch.manual_seed(3)
    init = torch.randn(5, 2)
    runs = {}
    for name, make in {
        "ours": lambda p: make_optimizer("adam", [p], 1e-2, weight_decay=0.1),
        "adamw": lambda p: torch.optim.AdamW([p], lr=1e-2, weight_decay=0.1),
        "ours0": lambda p: make_optimizer("adam", [p], 1e-2),
        "adam": lambda p: torch.optim.Adam([p], lr=1e-2),
    }.items():
        torch.manual_seed(4)
        p = torch.nn.Parameter(init.clone())
        opt = make(p)
        for _ in range(5):
            p.grad = torch.randn_like(p)
            opt.step()
        runs[name] = p.detach()
    torch.testing.assert_close(runs["ours"], runs["adamw"])
    torch.testing.assert_close(runs["ours0"], runs["adam"])
    assert not torch.allclose(runs["ours"], runs["ours0"])


def test_rmsprop_state_saved_without_weight_decay_still_loads():
    p = torch.nn.Parameter(torch.ones(2, 2))
    old = TFRMSprop([p], lr=0.1).state_dict()
    del old["param_groups"][0]["weight_decay"]
    opt = TFRMSprop([p], lr=0.1)
    opt.load_state_dict(old)
    p.grad = torch.ones(2, 2)
    opt.step()
    assert opt.param_groups[0]["weight_decay"] == 0.0


def test_schedules():
    assert lr_factor("constant", 500, 1000) == 1.0
    assert lr_factor("cosine", 0, 1000) == 1.0
    assert lr_factor("cosine", 500, 1000) == pytest.approx(0.5)
    assert lr_factor("cosine", 1000, 1000) == pytest.approx(0.0)
    assert lr_factor("constant", 0, 1000, warmup=10) == pytest.approx(0.1)
    assert lr_factor("cosine", 10, 1010, warmup=10) == 1.0


def test_weight_average_follows_tensorflows_moving_average():
    torch.manual_seed(2)
    model = torch.nn.Linear(3, 2)
    average = torch.nn.Linear(3, 2)
    average.load_state_dict(model.state_dict())
    expected = [p.detach().clone() for p in model.parameters()]
    for updates in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        update_average(average, model, 0.75, updates)
        rate = min(0.75, (1 + updates) / (10 + updates))  # 0.1, 0.18, ..., then the cap 0.75 from update 26 on
        expected = [rate * e + (1 - rate) * p.detach() for e, p in zip(expected, model.parameters())]
    for a, e in zip(average.parameters(), expected):
        torch.testing.assert_close(a.detach(), e)
    assert not torch.allclose(average.weight, model.weight)
