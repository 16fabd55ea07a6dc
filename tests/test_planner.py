"""Contribution analysis and scheme search (tinytrain.planner) on small
netzoo graphs with synthetic data: every gain is a real measurement in the
simulator (small data, 1 epoch), every memory figure an exact compile."""
import copy
import itertools
import json

import numpy as np
import pytest

from tinytrain import planner
from tinytrain.builder import quantize_input
from tinytrain.compiler import compile_model
from tinytrain.schemes import parse_scheme

import netzoo

MBNET_WEIGHTS = ["conv5", "dwconv6", "conv7", "dwconv8"]


def make_task(name, n_train=160, n_val=120, noise=0.5, seed=0):
    """A netzoo graph and a class-prototype task: x = prototype[y] + noise."""
    b = netzoo.ZOO[name](seed)
    g = b.quantize(netzoo.calib(b, seed=seed))
    rng = np.random.default_rng(seed + 7)
    n_cls = g.tensors[g.output].numel
    protos = rng.uniform(-1, 1, size=(n_cls,) + b.input_shape)
    y = rng.integers(0, n_cls, n_train + n_val)
    x = np.clip(protos[y] + rng.normal(0, noise, size=(len(y),) + b.input_shape), -1, 1)
    q = quantize_input(g, x).reshape(len(x), -1)
    return g, (q[:n_train], y[:n_train]), (q[n_train:], y[n_train:])


@pytest.fixture(scope="module")
def mbnet():
    g, train, val = make_task("mbnet")
    a = planner.contribution_analysis(g, train, val, bias_ks=[0, 1, 2, 4, 8], weight_layers=MBNET_WEIGHTS,
                                      epochs=1, lr=0.05, jobs=2, progress=False)
    return g, train, val, a


CACHES = {}  # exact compiles shared between searches on the same graph


def cache_of(g):
    return CACHES.setdefault(id(g), {})


@pytest.fixture(scope="module")
def cnn():
    g, train, val = make_task("cnn", noise=1.0)
    a = planner.contribution_analysis(g, train, val, bias_ks=[0, 1, 2, 3],
                                      weight_layers=["conv0", "dwconv1", "conv2"], epochs=1, lr=0.02,
                                      jobs=2, progress=False)
    return g, train, val, a


def budgets_of(a, n=7):
    arenas = sorted({c.arena for c in list(a.bias.values()) + list(a.weight.values())})
    lo, hi = arenas[0], arenas[-1] + 2000
    return sorted({int(v) for v in np.linspace(lo, hi, n)} | set(arenas[:: max(1, len(arenas) // 5)]))


# -- the analysis -----------------------------------------------------------------
def test_analysis_measures_every_configuration(mbnet):
    g, _, _, a = mbnet
    assert sorted(a.bias) == [0, 1, 2, 4, 8]
    assert set(a.weight) == {(n, r) for n in MBNET_WEIGHTS for r in planner.DEFAULT_RATIOS}
    assert a.base_k == max(a.bias, key=lambda k: (a.bias[k].acc, -k))  # the best k, ties: smaller
    assert a.bias_gain(0) == 0
    for k, c in a.bias.items():
        assert c.arena == compile_model(g, a.scheme(g, k)).arena_size
        assert c.accs and 0 <= c.acc <= 1
    for (name, r), c in a.weight.items():
        assert c.k == a.base_k and c.weights == {name: r}
        assert c.arena == compile_model(g, a.scheme(g, a.base_k, {name: r})).arena_size
        assert a.weight_gain(name, r) == pytest.approx(c.acc - a.bias[a.base_k].acc)
    # real measurements: training more changes the accuracy
    gains = [a.bias_gain(k) for k in a.bias] + [a.weight_gain(*key) for key in a.weight]
    assert len({round(v, 9) for v in gains}) > 2
    text = a.table()
    assert "biases of the last k layers" in text and "conv7" in text and "<- base" in text


def test_analysis_is_deterministic_and_independent_of_jobs(mbnet):
    g, train, val, a = mbnet
    b = planner.contribution_analysis(g, train, val, bias_ks=[0, 2], weight_layers=["conv7"], ratios=(0.5, 1.0),
                                      epochs=1, lr=0.05, jobs=1, base_k=a.base_k, progress=False)
    for k in (0, 2):
        assert b.bias[k].accs == a.bias[k].accs
    for r in (0.5, 1.0):
        assert b.weight[("conv7", r)].accs == a.weight[("conv7", r)].accs


def test_analysis_save_load_roundtrip(mbnet, tmp_path):
    g, _, _, a = mbnet
    a.save(tmp_path / "analysis.json")
    b = planner.Analysis.load(tmp_path / "analysis.json")
    assert b.table() == a.table()
    budget = budgets_of(a)[3]
    assert planner.search(b, budget, g).gain == planner.search(a, budget, g).gain


# -- the bound the branch and bound relies on ------------------------------------------
@pytest.mark.parametrize("name", ["mbnet", "cnn"])
def test_peak_live_grows_by_at_least_the_added_parameters(name):
    """Adding trained weights never frees a tensor: peak(S') >= peak(S) + persist(S') - persist(S)."""
    b = netzoo.ZOO[name](0)
    g = b.quantize(netzoo.calib(b))
    backbone, _ = planner.split_layers(g)
    rng = np.random.default_rng(1)
    for _ in range(40):
        k = int(rng.integers(0, len(backbone) + 1))
        small = {n: float(rng.choice([0, 0.25, 0.5, 1.0])) for n in backbone if rng.random() < 0.4}
        big = dict(small)
        for n in backbone:
            if rng.random() < 0.4:
                big[n] = max(big.get(n, 0.0), float(rng.choice([0.25, 0.5, 1.0])))
        p1 = compile_model(g, planner.make_scheme(g, k, small))
        p2 = compile_model(g, planner.make_scheme(g, k, big))
        assert p2.peak_live >= p1.peak_live + p2.persist_size - p1.persist_size
        assert p2.arena_size >= p2.peak_live


# -- the search ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["exact", "dp", "evolution"])
def test_search_respects_the_budget(mbnet, method):
    g, _, _, a = mbnet
    for budget in budgets_of(a):
        r = planner.search(a, budget, g, method=method, generations=20, cache=cache_of(g))
        plan = compile_model(g, r.scheme)
        assert plan.arena_size == r.arena_size <= budget
        head = planner.split_layers(g)[1]
        assert head in r.scheme.bias and r.scheme.weights[head] == 1.0
        expect = a.bias_gain(r.k) + sum(a.weight_gain(n, ratio) for n, ratio in r.weights.items())
        assert r.gain == pytest.approx(expect)
        assert f"exact arena {r.arena_size:,} bytes" in r.report


def test_exact_beats_or_equals_evolution_and_dp(mbnet):
    g, _, _, a = mbnet
    for budget in budgets_of(a):
        exact = planner.search(a, budget, g, cache=cache_of(g))
        assert exact.optimal
        for other in ("evolution", "dp"):
            assert exact.gain >= planner.search(a, budget, g, method=other, cache=cache_of(g)).gain - 1e-12


def test_exact_equals_brute_force_tiny(cnn):
    g, _, _, a = cnn
    for i, budget in enumerate(budgets_of(a, n=9)):
        exact = planner.search(a, budget, g, cache=cache_of(g))
        brute = planner.search(a, budget, g, method="brute", cache=None if i == 0 else cache_of(g))
        if i == 0:
            assert brute.compiles == 4 * 5 ** 3  # every scheme compiled
        assert exact.gain == pytest.approx(brute.gain, abs=1e-12)
        assert exact.arena_size <= budget


def test_exact_equals_brute_force_with_random_gains(mbnet):
    """The same exact arenas, many gain tables (random, of both signs): the
    branch and bound always finds the brute-force optimum, the evolution never
    does better."""
    g, _, _, a = mbnet
    space = planner.SearchSpace(a, g, cache_of(g))
    arena = {(k, ch): space.measure(k, ch)[0] for k in space.ks
             for ch in itertools.product(*(range(len(r)) for r in space.ratios))}
    rng = np.random.default_rng(3)
    budgets = budgets_of(a, n=5)
    for trial in range(30):
        b = copy.deepcopy(a)
        for c in list(b.bias.values()) + list(b.weight.values()):
            c.acc = float(rng.uniform(0.2, 0.9))
        b.bias[0].acc = 0.5
        b.bias[b.base_k].acc = 0.55
        sp = planner.SearchSpace(b, g)
        for budget in budgets:
            best = max(sp.gain(k, ch) for (k, ch), ar in arena.items() if ar <= budget)
            exact = planner.search(b, budget, g, cache=cache_of(g))
            assert exact.optimal and exact.gain == pytest.approx(best, abs=1e-12), (trial, budget)
            assert exact.arena_size <= budget
            if trial < 5:
                evo = planner.search(b, budget, g, method="evolution", generations=15, cache=cache_of(g))
                assert evo.gain <= best + 1e-12


# -- errors and the CLI entry point ---------------------------------------------------
def test_budget_too_small_says_the_minimum(mbnet):
    g, train, val, a = mbnet
    need = compile_model(g, a.scheme(g, 0)).arena_size
    assert planner.search(a, need, g).arena_size == need  # the head alone fits exactly
    with pytest.raises(ValueError, match=f"needs {need:,} bytes"):
        planner.search(a, need - 1, g)
    # plan_under_budget refuses before training anything (no data needed to find out)
    with pytest.raises(ValueError, match=f"needs {need:,} bytes"):
        planner.plan_under_budget(g, need - 4, None, None, lr=0.05)
    with pytest.raises(TypeError, match="bytes"):
        planner.search(a, "100k", g)


def test_unknown_layers_are_refused(mbnet, cnn):
    g, train, val, a = mbnet
    with pytest.raises(ValueError, match="unknown layer 'nope'.*conv5"):
        planner.contribution_analysis(g, train, val, bias_ks=[0], weight_layers=["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown layer 'pool9'"):
        planner.contribution_analysis(g, train, val, bias_ks=[0], weight_layers=["pool9"], progress=False)
    with pytest.raises(ValueError, match="classifier, which is always trained"):
        planner.contribution_analysis(g, train, val, bias_ks=[0], weight_layers=["conv10"], progress=False)
    with pytest.raises(ValueError, match="bias_ks"):
        planner.contribution_analysis(g, train, val, bias_ks=[9], weight_layers=["conv5"], progress=False)
    with pytest.raises(ValueError, match="inputs have"):
        planner.contribution_analysis(g, (train[0][:, :10], train[1]), val, bias_ks=[0], weight_layers=[],
                                      progress=False)
    # an analysis of one model does not plan another
    g_cnn, _, _, a_cnn = cnn
    with pytest.raises(ValueError, match="unknown layer"):
        planner.search(a_cnn, 10 ** 6, g)


def test_plan_under_budget(cnn, tmp_path):
    g, train, val, a = cnn
    budget = budgets_of(a)[2]
    result = planner.plan_under_budget(g, budget, train, val, bias_ks=[0, 1, 2, 3],
                                       weight_layers=["conv0", "dwconv1", "conv2"], epochs=1, lr=0.02,
                                       jobs=2, progress=False)
    scheme, report = result  # a Scheme plus a report
    assert compile_model(g, scheme).arena_size <= budget
    assert result.gain == pytest.approx(planner.search(a, budget, g).gain)
    assert "exact arena" in report and "predicted validation accuracy" in report
    # the scheme round-trips through the JSON form the CLI's --scheme reads
    path = tmp_path / "scheme.json"
    path.write_text(json.dumps(result.scheme_json()))
    again = parse_scheme(str(path), g)
    assert compile_model(g, again).data == compile_model(g, scheme).data
    assert result.analysis.table() == a.table().replace(
        f"{a.settings['seconds']:.0f} s", f"{result.analysis.settings['seconds']:.0f} s")
