"""The search methods over a SearchSpace: additive-memory DP and its repair,
branch and bound (exact), evolution, brute force."""
from __future__ import annotations

import itertools

import numpy as np

from ..compiler import ALIGN
from ..compiler.place import align
from .space import EPS, SearchSpace, better


def cost_unit(budget: int) -> int:
    """Bytes per knapsack cost unit: at most about 200,000 units per budget."""
    return max(ALIGN, align(budget // 200_000 + 1))


def mck(costs, gains, capacity: int):
    """Multiple-choice knapsack by dynamic programming: one option per group,
    total cost <= capacity (costs in units), maximal gain. Returns (tables
    best[i][c] = best gain of groups i.. within c, and argmax per group)."""
    n = len(costs)
    cap = max(0, int(capacity))
    best = [None] * (n + 1)
    arg = [None] * n
    best[n] = np.zeros(cap + 1)
    for i in range(n - 1, -1, -1):
        nxt = best[i + 1]
        cur = np.full(cap + 1, -np.inf)
        a = np.zeros(cap + 1, dtype=np.int64)
        for j, (c, g) in enumerate(zip(costs[i], gains[i])):
            if c > cap:
                continue
            cand = np.full(cap + 1, -np.inf)
            cand[c:] = nxt[:cap + 1 - c] + g
            better = cand > cur + EPS
            cur = np.where(better, cand, cur)
            a = np.where(better, j, a)
        best[i], arg[i] = cur, a
    return best, arg


def mck_choice(costs, arg, capacity: int) -> tuple:
    c, out = int(capacity), []
    for i in range(len(arg)):
        j = int(arg[i][c])
        out.append(j)
        c -= costs[i][j]
    return tuple(out)


def dp(space: SearchSpace, budget: int):
    """Best (k, choice) under the additive memory estimate; None if nothing fits it."""
    best = None
    unit = cost_unit(budget)
    costs = [[-(-d // unit) for d in row] for row in space.dmem]  # rounded up: the estimate holds
    for k in space.ks:
        cap = (budget - space.analysis.bias[k].arena) // unit
        if cap < 0:
            continue
        tables, arg = mck(costs, space.gains, cap)
        choice = mck_choice(costs, arg, cap)
        cand = (space.gain(k, choice), space.estimate(k, choice), k, choice)
        if better(cand[:2], best[:2] if best else None):
            best = cand
    return best


def repair(space: SearchSpace, budget: int, k, choice):
    """Downgrade the cheapest thing (least gain lost per byte saved, exact
    arenas) until the exact arena fits."""
    k, choice = k, list(choice)
    arena = space.measure(k, choice)[0]
    while arena > budget:
        moves = []
        for i, c in enumerate(choice):
            for j in range(len(space.ratios[i])):
                if space.ratios[i][j] < space.ratios[i][c]:
                    moves.append((k, choice[:i] + [j] + choice[i + 1:]))
        for k2 in space.ks:
            if k2 < k:
                moves.append((k2, list(choice)))
        g0 = space.gain(k, choice)
        scored = []
        for k2, ch in moves:
            a = space.measure(k2, ch)[0]
            if a < arena:
                scored.append(((g0 - space.gain(k2, ch)) / (arena - a), -space.gain(k2, ch), k2, ch, a))
        if not scored:
            return 0, list(space.zero)  # the head alone (checked to fit)
        _, _, k, choice, arena = min(scored, key=lambda s: (s[0], s[1]))
    return k, choice


def branch_and_bound(space: SearchSpace, budget: int, incumbent, max_compiles: int):
    """Exact maximum of the additive gain under the exact arena (see the module doc)."""
    unit = cost_unit(budget)
    costs = [[c // unit for c in row] for row in space.wbytes]  # rounded down: the bound holds
    cap_units = budget // unit
    tables, _ = mck(costs, space.gains, cap_units)
    n = len(space.layers)
    best = incumbent  # (gain, arena, k, choice)

    def bound(i, cap_bytes):
        return tables[i][min(cap_units, max(0, cap_bytes) // unit)] if cap_bytes >= 0 else -np.inf

    for k in sorted(space.ks, key=lambda k: -space.gk[k]):
        stack = [(k, ())]
        while stack:
            if space.compiles >= max_compiles:
                return best, False
            k, prefix = stack.pop()
            i = len(prefix)
            choice = prefix + (0,) * (n - i)
            arena, peak, _, _ = space.measure(k, choice)
            g = space.gain(k, choice)
            if arena <= budget and better((g, arena), best[:2] if best else None):
                best = (g, arena, k, choice)
            if peak > budget or i == n:
                continue
            if g + bound(i, budget - peak) <= (best[0] if best else -np.inf) + EPS:
                continue
            children = []
            for j in range(len(space.ratios[i])):
                cost = space.wbytes[i][j]
                gj = g + space.gains[i][j]
                if peak + cost > budget:
                    continue
                if gj + bound(i + 1, budget - peak - cost) <= (best[0] if best else -np.inf) + EPS:
                    continue
                children.append((gj, j))
            # Depth first, most promising child on top of the stack.
            for _, j in sorted(children):
                stack.append((k, prefix + (j,)))
    return best, True


def evolution(space: SearchSpace, budget: int, *, population: int = 50, generations: int = 40,
               mutation: float = 0.15, seed: int = 0):
    """The paper's kind of evolutionary search over (k, one ratio per layer)."""
    rng = np.random.default_rng(seed)
    n = len(space.layers)
    sizes = [len(r) for r in space.ratios]

    def fitness(g):
        k, choice = g
        arena = space.measure(k, choice)[0]
        return (space.gain(k, choice), -arena) if arena <= budget else (-np.inf, 0)

    def random_genome():
        return (space.ks[rng.integers(len(space.ks))], tuple(int(rng.integers(s)) for s in sizes))

    pop = {(0, space.zero)}
    tries = 0
    while len(pop) < population and tries < 20 * population:
        g = random_genome()
        tries += 1
        if fitness(g)[0] > -np.inf:
            pop.add(g)
    pop = sorted(pop, key=fitness, reverse=True)
    for _ in range(generations):
        parents = pop[:max(2, len(pop) // 2)]
        children = set()
        for _ in range(population):
            a = parents[rng.integers(len(parents))]
            b = parents[rng.integers(len(parents))]
            k = a[0] if rng.random() < 0.5 else b[0]
            choice = [a[1][i] if rng.random() < 0.5 else b[1][i] for i in range(n)]
            if rng.random() < mutation:
                k = space.ks[rng.integers(len(space.ks))]
            for i in range(n):
                if rng.random() < mutation:
                    choice[i] = int(rng.integers(sizes[i]))
            children.add((k, tuple(choice)))
        pool = {g for g in list(pop) + list(children) if fitness(g)[0] > -np.inf}
        pop = sorted(pool, key=fitness, reverse=True)[:population]
    k, choice = pop[0]
    return space.gain(k, choice), space.measure(k, choice)[0], k, choice


def brute(space: SearchSpace, budget: int, max_configs: int = 200_000):
    if space.size() > max_configs:
        raise ValueError(f"brute force over {space.size()} schemes: too many (limit {max_configs})")
    best = None
    for k in space.ks:
        for choice in itertools.product(*(range(len(r)) for r in space.ratios)):
            arena = space.measure(k, choice)[0]
            g = space.gain(k, choice)
            if arena <= budget and better((g, arena), best[:2] if best else None):
                best = (g, arena, k, choice)
    return best
