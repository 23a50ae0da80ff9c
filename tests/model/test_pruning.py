import pytest

from dilated_rnn.model.pruning import plan_outputs

PAPER = [2**i for i in range(9)]


def test_paper_schedule_needs_1568_cell_steps():
    plan = plan_outputs(784, PAPER, [783])
    assert plan.cell_steps == 1568
    assert [lp.length for lp in plan.layers] == [784, 392, 196, 98, 49, 25, 13, 7, 4]
    assert all(len(lp.residues) == 1 and not lp.padded for lp in plan.layers)


def test_nested_chains_are_aligned_to_the_last_step():
    plan = plan_outputs(100, [1, 2, 4, 8], [99])
    for lp, d in zip(plan.layers, [1, 2, 4, 8]):
        assert lp.positions[-1] == 99 and all(b - a == d for a, b in zip(lp.positions, lp.positions[1:]))


def _dependencies(T, dilations, steps):
    """Brute force: (layer, t) pairs that the outputs at ``steps`` depend on."""
    need = {(len(dilations) - 1, t) for t in steps}
    frontier = list(need)
    while frontier:
        layer, t = frontier.pop()
        deps = [(layer - 1, t)] if layer > 0 else []
        if t - dilations[layer] >= 0:
            deps.append((layer, t - dilations[layer]))
        for dep in deps:
            if dep not in need:
                need.add(dep)
                frontier.append(dep)
    return need


@pytest.mark.parametrize(
    "T,dilations,steps",
    [(784, PAPER, [783]), (50, [1, 3, 9], [49]), (31, [2, 4, 8], [29, 30]), (17, [3, 2, 5], [16]),
     (40, [1, 1, 2], [39, 12]), (9, [4, 4], [8])],
)
def test_plan_covers_every_dependency_and_chains_start_at_their_residue(T, dilations, steps):
    plan = plan_outputs(T, dilations, steps)
    needed = _dependencies(T, dilations, steps)
    for layer, lp in enumerate(plan.layers):
        computed = {p for p in lp.positions if p < T}
        assert {t for (l, t) in needed if l == layer} <= computed
        for r in lp.residues:
            assert r < dilations[layer]  # each chain starts at its first real step
    full = len(dilations) * T
    assert plan.cell_steps <= full or any(lp.padded for lp in plan.layers)


def test_readout_rows_point_at_requested_steps():
    plan = plan_outputs(20, [1, 3], [19, 5, 12])
    top = plan.layers[-1].positions
    assert [top[i] for i in plan.readout] == [19, 5, 12]


def test_rejects_steps_outside_the_sequence():
    with pytest.raises(ValueError, match="subset of 0..9"):
        plan_outputs(10, [1, 2], [10])
