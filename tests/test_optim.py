import math

import pytest
import torch

from dilated_rnn.optim import TFRMSprop, lr_factor, make_optimizer


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
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("sgd", params, 1e-3)


def test_schedules():
    assert lr_factor("constant", 500, 1000) == 1.0
    assert lr_factor("cosine", 0, 1000) == 1.0
    assert lr_factor("cosine", 500, 1000) == pytest.approx(0.5)
    assert lr_factor("cosine", 1000, 1000) == pytest.approx(0.0)
    assert lr_factor("constant", 0, 1000, warmup=10) == pytest.approx(0.1)
    assert lr_factor("cosine", 10, 1010, warmup=10) == 1.0
