"""Sparse-update planning: contribution analysis, then a scheme search under a
memory budget (the method of "On-Device Training Under 256KB Memory", Sec. 3.3,
whose analysis and search code the paper never published).

1. `contribution_analysis` measures, in the simulator (the C core the device
   runs), what fine-tuning each part of the network is worth:

   - the classifier alone (its weights and bias; always trained: "the head");
   - for each k in `bias_ks`: the biases of the last k layers with parameters
     *before the classifier* (k counts backbone layers, as the paper's
     `n_bias_update` does, so k = 0 is the head alone; the project's scheme
     spec `bias:K` counts the classifier too: our k is `bias:{k+1}`), plus the
     head. Gain = accuracy - accuracy of the head alone;
   - for each (layer, ratio) in `weight_layers` x `ratios`: the *extra* gain of
     also training that layer's weights at that ratio of its input channels
     (depthwise: channels), on top of a base bias setting. The base is the k
     with the best measured accuracy (ties: the smaller k) unless `base_k`
     says otherwise ('largest' or a number). The best k is the setting a
     searched scheme ends up near when memory allows, and it is the setting
     whose accuracy is least likely to be lifted by a weight update merely
     because that update gives the backbone more freedom.

   Every configuration is also compiled, and its exact arena (the bytes the
   device needs, `compile_model(...).arena_size`) is recorded. Runs are
   independent and go to a multiprocessing pool of `jobs` workers. Each run
   trains from the same initial model with the sample order of `seed` (one
   permutation of the training set per epoch), so two runs differ only in
   what they train and the gains are paired differences; several seeds
   average out the order. Results do not depend on `jobs`.

2. `search` picks the scheme (k, one ratio per analysed layer, 0 = frozen) of
   highest summed gain, gain(k) + sum of the layers' extra gains (additive, as
   the paper assumes), whose exact arena fits the budget:

   - `method="exact"` (default): branch and bound. The incumbent comes from the
     additive-memory dynamic programme below; then every k and every prefix of
     layer decisions is a node whose scheme (the undecided layers frozen) is
     compiled. A node is pruned when no completion can fit or beat the
     incumbent, from two properties of the compiler's plan: training more
     weights never removes a tensor nor shortens a lifetime (it may undo a
     fusion, which only adds bytes), so the peak of live bytes (a lower bound
     of the arena) grows by at least the added persistent bytes; and the
     persistent bytes of weights are exactly additive. The first is a property
     of compile_model, not a law: tests/test_planner.py checks it on random
     scheme pairs (so a compiler change that broke it would show). The bound
     on the remaining gain is a knapsack over those persistent bytes. Every
     scheme reached is checked with its exact arena, so the answer is optimal
     for the additive gain model under the EXACT memory, which brute force
     confirms on small cases (tests). A compile limit stops it early (then
     `optimal` is False and the best found is returned).
   - `method="dp"`: the cheap approximation: memory estimated additively,
     arena(k) + sum over layers of the measured extra arena of (layer, ratio)
     at the base k; a multiple-choice knapsack solved exactly by dynamic
     programming; then verified with `compile_model` and, if the exact arena
     exceeds the budget, repaired by the cheapest downgrade (least gain lost
     per byte saved) until it fits.
   - `method="evolution"`: an evolutionary search like the paper's
     (population, uniform crossover, mutation, elitism; fitness = summed gain
     if the exact arena fits, else rejected).
   - `method="brute"`: every combination, each compiled (small spaces only).

`plan_under_budget(graph, budget, train, val, **kw)` runs both (as
`tinytrain plan MODEL --budget BYTES --data FILE.npz` does, in
tinytrain/plancmd.py);
`evaluate_schemes` trains and scores any schemes the same way (held-out test).

The gains are measurements of short batch-1 fine-tuning runs and carry the
noise of the sample order (several points on a few hundred samples): average
several `seeds`, and expect the additive prediction to be optimistic (the
search picks the gains that came out high).

The package, one concern a module: schemes.py (schemes in the planner's
terms), data.py (data sets, one fine-tuning run), pool.py (worker processes),
analysis.py (contribution_analysis, evaluate_schemes), space.py (the search
space with cached exact compiles), methods.py (the four search methods),
search.py (search, plan_under_budget), report.py (the printed tables).
"""
from .analysis import Analysis, Config, contribution_analysis, evaluate_schemes
from .data import as_dataset, sample_orders, train_and_evaluate
from .lr_sweep import LR_CANDIDATES, pick_lr
from .pool import default_jobs
from .schemes import (DEFAULT_RATIOS, default_bias_ks, default_weight_layers, fmt_ratio, graph_fingerprint,
                      lr_scale_dict, make_scheme, resolve_layer, split_layers)
from .search import METHODS, SearchResult, minimum_budget, plan_under_budget, search
from .space import SearchSpace

__all__ = ["Analysis", "Config", "DEFAULT_RATIOS", "LR_CANDIDATES", "METHODS", "pick_lr", "SearchResult", "SearchSpace", "as_dataset",
           "contribution_analysis", "default_bias_ks", "default_jobs", "default_weight_layers",
           "evaluate_schemes", "fmt_ratio", "graph_fingerprint", "lr_scale_dict", "make_scheme",
           "minimum_budget", "plan_under_budget", "resolve_layer", "sample_orders", "search",
           "split_layers", "train_and_evaluate"]
