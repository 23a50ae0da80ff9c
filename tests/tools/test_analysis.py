import math

import pytest

from dilated_rnn.tools.analysis import (
    curves,
    mean_recurrent_length,
    plot_curves,
    recurrent_lengths,
    skip_rnn_mean_recurrent_length,
)


@pytest.mark.parametrize("L", range(1, 11))
def test_power_of_two_stack_matches_the_closed_form(L):
    m = 2 ** (L - 1)
    expected = (L - 1) / 2 + 2 ** -(L - 1)
    assert mean_recurrent_length([2**i for i in range(L)], m) == pytest.approx(expected)


def test_paper_stack_value():
    assert mean_recurrent_length([2**i for i in range(9)], 256) == pytest.approx(4.0039, abs=5e-5)


@pytest.mark.parametrize("m", [1, 2, 7, 100])
def test_plain_rnn_is_m_plus_one_over_two(m):
    assert mean_recurrent_length([1], m) == pytest.approx((m + 1) / 2)


def test_lengths_are_binary_popcounts():
    assert recurrent_lengths([1, 2, 4, 8], 15) == [bin(n).count("1") for n in range(1, 16)]


def test_skip_rnn_and_unreachable_spans():
    assert skip_rnn_mean_recurrent_length(4, 8) == pytest.approx(sum(n // 4 + n % 4 for n in range(1, 9)) / 8)
    assert recurrent_lengths([2, 4], 4)[0] == math.inf  # odd spans never reach the top with d0 = 2
    with pytest.raises(ValueError, match="dilations must be positive"):
        mean_recurrent_length([1, 0], 4)


def test_curves_order_and_plot(tmp_path):
    data = curves([1, 2, 4, 8], 64)
    assert data["dilated"][-1] < data["skip_rnn"][-1] < data["plain_rnn"][-1]
    plot_curves(data, tmp_path / "mrl.png")
    assert (tmp_path / "mrl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
