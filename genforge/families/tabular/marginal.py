"""AIM and MST: differentially private synthesizers built from noisy marginals (private-pgm).

    discretise   numbers -> the public schema's bin edges for the column, else `model.bins`
                 equal-width bins between the schema's bounds (public, or DP-estimated by
                 genforge.modalities.tables.privacy); an int column with fewer
                 values than bins keeps one bin per value; categories (and the missing
                 indicators of numeric columns) are their codes; a missing number sits in
                 its placeholder's bin, and its indicator says it is missing
    measure      MST or AIM (marginal_select.py): Gaussian-noised marginals chosen privately,
                 accounted in zCDP, rho from the (epsilon, delta) left after preprocessing
    estimate     mirror descent (mbi) fits a graphical model to the noisy marginals
    store        the model as one conditional table per column along the junction tree's
                 elimination order, p(x_j | parents_j), so sampling needs neither jax nor mbi
    sample       ancestral sampling; a number is drawn uniformly inside its bin

The fit sees the whole table at once (`fit`), so the loop takes no SGD steps and DP-SGD is not
used: the guarantee is the marginal mechanism's. `where` conditions reject like the other
synthesizers'; a condition too rare to reject fixes the column during sampling (its ancestors
in the order are not updated, as with TabDDPM's inpainting). `complete` uses the shared donor
imputation from free samples.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from genforge.errors import ConfigError
from genforge.families.tabular.objective import TabularObjective
from genforge.modalities.tables.schema import EncodedTable


class MarginalTables(nn.Module):
    """p(x_j | parents_j) for every model column, in sampling order; `structure` (saved in the
    model file's data info) says which column and parents each buffer `cpt_i` belongs to."""

    def __init__(self, structure: dict[str, Any] | None, sizes: dict[str, int]) -> None:
        super().__init__()
        self.register_buffer("fitted", torch.zeros(()))
        self.structure = structure or {"order": [], "parents": []}
        for i, (col, parents) in enumerate(zip(self.structure["order"],
                                               self.structure["parents"], strict=True)):
            shape = [sizes[p] for p in parents] + [sizes[col]]
            self.register_buffer(f"cpt_{i}", torch.full(shape, 1.0 / sizes[col]))


def bin_layout(codec: Any, bins: int) -> list[np.ndarray]:
    """Per numeric model column its bin edges: the public schema's own ("bins": a rising
    list, e.g. a zero bin and log-spaced money amounts), else `bins` equal widths between its
    bounds (an int column with fewer values than `bins` gets one bin per whole number)."""
    out = []
    for col in codec.numeric:
        if col.get("bins"):
            out.append(np.asarray(col["bins"], np.float64))
            continue
        if col["kind"] == "datetime":
            lo, hi = (pd.Timestamp(col[k]).value / 1e9 for k in ("min", "max"))
        else:
            lo, hi = float(col["min"]), float(col["max"])
        n = bins
        if col["kind"] == "int" and hi - lo + 1 <= bins:  # one bin per whole number
            lo, hi, n = lo - 0.5, hi + 0.5, int(hi - lo + 1)
        out.append(np.linspace(lo, hi if hi > lo else lo + 1.0, n + 1))
    return out


class MarginalObjective(TabularObjective):
    """`model.kind=aim|mst` (see the module docstring); built from its data info, fitted by
    `fit(data, privacy, seed)` once, before the run folder exists."""

    sampling_nets = ("marginal",)
    learned_conditioning = False  # sample freely and reject; fix the column when too rare

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        super().__init__(cfg, data_info)
        self.layout = bin_layout(self.codec, cfg.bins)
        self.names = [c["name"] for c in self.codec.numeric] + \
            [c["name"] for c in self.codec.categorical]
        self.sizes = dict(zip(self.names, [len(e) - 1 for e in self.layout] + list(self.cards),
                              strict=True))
        self.nets = {"marginal": MarginalTables(data_info.get("marginal"), self.sizes)}

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        return {}  # fitted, not trained

    # --- discretising ----------------------------------------------------------------------

    def to_codes(self, enc: EncodedTable) -> np.ndarray:
        """Encoded rows -> (N, d) int codes: bins of the numbers, then the categories."""
        raw = enc.num.double().numpy() * self.codec.std + self.codec.mean  # (N, n_num)
        cols = []
        for j, edges in enumerate(self.layout):
            k = np.searchsorted(edges, raw[:, j], side="right") - 1
            cols.append(np.clip(k, 0, len(edges) - 2).astype(np.int64))
        return np.column_stack([*cols, enc.cat.numpy()]) if cols else enc.cat.numpy()

    def from_codes(self, codes: torch.Tensor) -> EncodedTable:
        """(m, d) codes -> encoded rows; a number is uniform inside its bin."""
        num = torch.zeros(len(codes), self.n_num, dtype=torch.float64)
        for j, edges in enumerate(self.layout):
            edges = torch.from_numpy(edges)
            u = torch.rand(len(codes), dtype=torch.float64)
            lo, hi = edges[codes[:, j]], edges[codes[:, j] + 1]
            raw = lo + u * (hi - lo)
            num[:, j] = (raw - self.codec.mean[j]) / self.codec.std[j]
        return EncodedTable(num.float(), codes[:, self.n_num:].clone())

    # --- fitting ---------------------------------------------------------------------------

    def fit(self, data: Any, privacy: Any, seed: int) -> dict[str, Any]:
        """Measure, select and estimate on all of `data`; returns the run record's privacy
        entry (every step's epsilon and delta, preprocessing included)."""
        from genforge.families.tabular import marginal_select as ms

        Dataset, Domain = ms.mbi().Dataset, ms.mbi().Domain

        items = list(getattr(data, "privacy_items", []))
        eps, delta, rho = self._budget(privacy, len(data), items)
        self._check_domain()
        workload = self.workload()
        codes = self.to_codes(data.encoded)
        table = Dataset({a: codes[:, j] for j, a in enumerate(self.names)},
                        Domain(self.names, [self.sizes[a] for a in self.names]))
        rng = np.random.default_rng(seed)
        c = self.cfg
        if c.kind == "mst":
            model, spend = ms.mst(table, rho, [w for w in workload if len(w) == 2],
                                  one_way_share=c.one_way_share, iters=c.estimation_iters,
                                  rng=rng)
        else:
            model, spend = ms.aim(table, rho, workload, max_model_size=c.max_model_size,
                                  rounds=c.rounds, iters=c.round_iters,
                                  final_iters=c.estimation_iters, rng=rng)
        structure = self._compile(model)
        self.info["marginal"] = structure  # the model file's data info carries the structure
        spent = ms.cdp_eps(spend.rho, delta)
        items.append({"step": "measurement", "mechanism": f"{c.kind} (Gaussian marginals, "
                      "exponential-mechanism selection; zCDP)", "epsilon": spent,
                      "delta": delta, "detail": {"rho": spend.rho, "rho_budget": rho,
                                                 "epsilon_budget": eps,
                                                 "marginals": len(spend.measurements),
                                                 "cliques": [m.clique for m in
                                                             spend.measurements]}})
        total_epsilon = sum(i["epsilon"] for i in items)
        total_delta = sum(i["delta"] for i in items)
        return {"epsilon": total_epsilon, "delta": total_delta, "epsilon_target": privacy.epsilon,
                "total": {"epsilon": total_epsilon, "delta": total_delta,
                          "composition": "the measurements composed in zCDP and converted "
                                         "once; the preprocessing releases added by basic "
                                         "composition"},
                # the loop adds where the seed of numpy's PCG64 noise came from
                "assumptions": ["public: the column names and kinds, and the number of rows"],
                "mechanism": f"{c.kind.upper()} (noisy marginals, private-pgm)",
                "accountant": "zCDP for the measurements (converted once, Canonne-Kamath-"
                              "Steinke 2020); basic composition with the preprocessing",
                "neighbouring": "add or remove one table row", "records": len(data),
                "record_unit": "one table row", "items": items,
                "assumed_public": "the column names and kinds, and the number of rows",
                "noise": "numpy's PCG64 generator (not a cryptographic source)"}

    def _budget(self, privacy: Any, n: int, items: list[dict]) -> tuple[float, float, float]:
        """(epsilon, delta) left for the measurements after preprocessing, and its rho."""
        from genforge.families.tabular.marginal_select import cdp_rho

        kind = self.cfg.kind
        if privacy is None or privacy.epsilon is None:
            raise ConfigError(f"model.kind={kind} calibrates its noise to privacy.epsilon: set "
                              "privacy.epsilon (e.g. 1) and privacy.delta (e.g. 1e-5)")
        if privacy.delta >= 1 / n:
            raise ConfigError(f"privacy.delta={privacy.delta}: must be below 1 / records = "
                              f"{1 / n:.3g} ({n} rows); 1e-5 or 1/(10 n) is usual")
        eps = privacy.epsilon - sum(i["epsilon"] for i in items)
        delta = privacy.delta - sum(i["delta"] for i in items)
        if not eps > 0 or not delta > 0:
            raise ConfigError(f"privacy.preprocessing_share: preprocessing spent epsilon "
                              f"{privacy.epsilon - eps:.3g}, delta {privacy.delta - delta:.3g} "
                              "of the budget, leaving none to measure; lower it")
        return eps, delta, cdp_rho(eps, delta)

    def _check_domain(self) -> None:
        for name, size in self.sizes.items():
            if size > self.cfg.max_domain:
                raise ConfigError(f"column {name!r} has {size} categories, more than "
                                  f"model.max_domain={self.cfg.max_domain}; raise it, or drop "
                                  f"the column (data.columns=[{name}:drop])")

    def workload(self) -> list[tuple[str, ...]]:
        """model.workload ("a+b" entries), else all pairs (mst) or all triples (aim)."""
        if self.cfg.workload:
            out = []
            for entry in self.cfg.workload:
                clique = tuple(x.strip() for x in entry.split("+"))
                for name in clique:
                    if name not in self.sizes:
                        raise ConfigError(f"model.workload entry {entry!r} names {name!r}, "
                                          f"not a column; columns: {', '.join(self.names)}")
                out.append(tuple(sorted(set(clique))))
            return out
        degree = self.cfg.workload_degree or (2 if self.cfg.kind == "mst" else 3)
        return list(itertools.combinations(self.names, min(degree, len(self.names))))

    def _compile(self, model: Any) -> dict[str, Any]:
        """The fitted model's junction tree as conditional tables in elimination order."""
        from mbi import junction_tree, marginal_oracles

        tree, order = junction_tree.make_junction_tree(model.domain,
                                                       [tuple(c) for c in model.cliques])
        cliques = [set(c) for c in tree.nodes]
        marginals = marginal_oracles.message_passing_stable(
            model.potentials.expand(list(tree.nodes)), model.total)
        structure: dict[str, Any] = {"order": [], "parents": []}
        tables, used = [], set()
        for col in order[::-1]:
            near = set().union(*[c for c in cliques if col in c]) & used
            parents = [a for a in self.names if a in near]
            joint = np.asarray(marginals.project((*parents, col)).datavector(flatten=False),
                               np.float64).clip(min=0)
            total = joint.sum(-1, keepdims=True)
            cond = np.where(total > 0, joint / np.where(total > 0, total, 1),
                            1.0 / joint.shape[-1])
            structure["order"].append(col)
            structure["parents"].append(parents)
            tables.append(torch.from_numpy(cond).float())
            used.add(col)
        net = MarginalTables(structure, self.sizes)
        for i, t in enumerate(tables):
            getattr(net, f"cpt_{i}").copy_(t)
        net.fitted.fill_(1.0)
        self.nets["marginal"] = net
        return structure

    # --- sampling --------------------------------------------------------------------------

    def _generate(self, m: int, cond: dict[int, int]) -> EncodedTable:
        net = self.nets["marginal"]
        if not float(net.fitted):
            raise ConfigError("this aim/mst model was never fitted; train it first")
        index = {a: j for j, a in enumerate(self.names)}
        fixed = {self.n_num + j: code for j, code in cond.items()}
        codes = torch.zeros(m, len(self.names), dtype=torch.long)
        for i, (col, parents) in enumerate(zip(net.structure["order"],
                                               net.structure["parents"], strict=True)):
            j = index[col]
            if j in fixed:
                codes[:, j] = fixed[j]
                continue
            table = getattr(net, f"cpt_{i}").cpu()
            flat = torch.zeros(m, dtype=torch.long)
            for p in parents:  # row-major index of the parents' values
                flat = flat * self.sizes[p] + codes[:, index[p]]
            probs = table.reshape(-1, table.shape[-1])[flat]  # (m, k)
            codes[:, j] = torch.multinomial(probs, 1).squeeze(1)
        return self.from_codes(codes)

