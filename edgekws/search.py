"""`edgekws search`: the Pareto front of the trained space for one device tier, and the pick.

Objectives: validation accuracy ↑ (the accuracy oracle: extracted subnet, BN recalibrated, pinned
validation pack), latency ↓ (a cost model fitted on the tier's board rows, or on instruction
counts under emulation — `Predictor` says which) and model size ↓. Decision variables: every
width and depth slot of the space the supernet was trained on, the precision (float / int8) and
the runtime. Constraints: the tier's budgets (parameters, model KB, RAM KB, p95 latency).

The optimiser is optuna's NSGA-II with constraints (`Trial.set_constraint`; a kept library rather
than a hand-written GA): infeasible trials are ranked behind feasible ones by how far they overshoot,
so the front converges inside the budgets. Seeded, and the oracle is deterministic, so a search
is reproducible. The first trials are the uniform widths, so the pick is never worse than the best
uniform subnet. The pick is the most accurate feasible trial (ties: lower latency, then smaller);
a tier that nothing fits has no pick — the caller reports it and fails, never picks silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

from edgekws.errors import EdgeKWSError
from edgekws.spec import SearchSpace, SubnetSpec
from edgekws.targets import DeviceTarget

PRECISIONS = ("float", "int8")


class Predictor(Protocol):
    def predict(self, spec: SubnetSpec, runtime: str, precision: str) -> dict:
        """{latency_ms, latency_p95_ms, ram_kb, model_kb, latency_source}"""


@dataclass(frozen=True)
class Evaluation:
    spec: SubnetSpec
    runtime: str
    precision: str
    accuracy: float
    latency_ms: float
    latency_p95_ms: float
    model_kb: float
    ram_kb: float
    params: int
    latency_source: str
    violations: dict = field(default_factory=dict)  # budget -> relative overshoot (> 0)

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def key(self) -> str:
        return f"{self.spec.name}|{self.runtime}|{self.precision}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        d["name"] = self.spec.name
        d["feasible"] = self.feasible
        return d


def evaluate(spec: SubnetSpec, runtime: str, precision: str, target: DeviceTarget, accuracy: Callable[[SubnetSpec], float],
             predictor: Predictor, num_classes: int = 12, family=None,
             trained: Callable[[SubnetSpec], bool] | None = None) -> Evaluation:
    """One (spec, runtime, precision) against a tier. A spec training never visited (`trained`
    says no, e.g. mixed widths in a supernet trained with one width per subnet) is infeasible
    and not scored: its weights were never optimised as that subnet."""
    from edgekws.accounting import account

    acc = account(spec, num_classes, family=family)
    p = predictor.predict(spec, runtime, precision)
    b = target.budgets
    over = {}
    if trained is not None and not trained(spec):
        return Evaluation(spec, runtime, precision, 0.0, round(p["latency_ms"], 4), round(p["latency_p95_ms"], 4),
                          round(p["model_kb"], 1), round(p["ram_kb"], 1), acc.params, p["latency_source"],
                          {"untrained": 1.0})
    for name, value, limit in (("params", acc.params, b.max_params), ("model_kb", p["model_kb"], b.max_model_kb),
                               ("ram_kb", p["ram_kb"], b.max_ram_kb), ("p95_latency_ms", p["latency_p95_ms"], b.max_p95_latency_ms)):
        if value > limit:
            over[name] = round(value / limit - 1, 4)
    return Evaluation(spec, runtime, precision, accuracy(spec), round(p["latency_ms"], 4), round(p["latency_p95_ms"], 4),
                      round(p["model_kb"], 1), round(p["ram_kb"], 1), acc.params, p["latency_source"], over)


def pick(evaluations: list[Evaluation]) -> Evaluation | None:
    feasible = [e for e in evaluations if e.feasible]
    if not feasible:
        return None
    return min(feasible, key=lambda e: (-e.accuracy, e.latency_ms, e.model_kb, e.key))


def pareto(evaluations: list[Evaluation]) -> list[Evaluation]:
    """Feasible evaluations no other feasible one beats on accuracy, latency and size at once."""
    feasible = list({e.key: e for e in evaluations if e.feasible}.values())
    front = []
    for e in feasible:
        dominated = any(o.accuracy >= e.accuracy and o.latency_ms <= e.latency_ms and o.model_kb <= e.model_kb
                        and (o.accuracy, o.latency_ms, o.model_kb) != (e.accuracy, e.latency_ms, e.model_kb) for o in feasible)
        if not dominated:
            front.append(e)
    return sorted(front, key=lambda e: (e.latency_ms, -e.accuracy))


@dataclass
class SearchResult:
    target: str
    trials: int
    seed: int
    sampler: str
    evaluations: list[Evaluation]
    front: list[Evaluation]
    pick: Evaluation | None
    seconds: float
    oracle_evaluations: int = 0

    def to_dict(self) -> dict:
        return {"target": self.target, "trials": self.trials, "seed": self.seed, "sampler": self.sampler,
                "seconds": round(self.seconds, 1), "distinct_evaluated": len({e.key for e in self.evaluations}),
                "feasible": sum(e.feasible for e in {e.key: e for e in self.evaluations}.values()),
                "oracle_evaluations": self.oracle_evaluations,
                "pick": self.pick.to_dict() if self.pick else None, "front": [e.to_dict() for e in self.front]}


def search(space: SearchSpace, target: DeviceTarget, accuracy: Callable[[SubnetSpec], float], predictor: Predictor,
           runtimes: tuple[str, ...] | None = None, precisions: tuple[str, ...] = PRECISIONS, trials: int = 200,
           seed: int = 0, population: int = 24, sampler: str = "nsga2", num_classes: int = 12, family=None,
           trained: Callable[[SubnetSpec], bool] | None = None, log: Callable[[str], None] | None = None) -> SearchResult:
    """Run the multi-objective search for one tier. `sampler="random"` is the baseline the
    benchmark compares against (same evaluations, same constraints)."""
    import time

    import optuna

    if trials < 1:
        raise EdgeKWSError(f"trials must be at least 1 (got {trials})")
    runtimes = tuple(runtimes or (target.runtime,))
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if sampler == "nsga2":
        smp = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    elif sampler == "random":
        smp = optuna.samplers.RandomSampler(seed=seed)
    else:
        raise EdgeKWSError(f"unknown sampler '{sampler}' (valid: nsga2, random)")
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=smp)
    seen: dict[str, Evaluation] = {}
    evaluations: list[Evaluation] = []
    budgets = ("params", "model_kb", "ram_kb", "p95_latency_ms", "untrained")

    def objective(trial) -> tuple[float, float, float]:
        channels = tuple(trial.suggest_categorical(f"w_{n}", list(c)) for n, c in zip(space.channel_names, space.channel_choices))
        depths = tuple(trial.suggest_categorical(f"d_{n}", list(c)) for n, c in zip(space.depth_names, space.depth_choices))
        runtime = trial.suggest_categorical("runtime", list(runtimes))
        precision = trial.suggest_categorical("precision", list(precisions))
        spec = SubnetSpec(space.family, channels, depths)
        key = f"{spec.name}|{runtime}|{precision}"
        ev = seen.get(key) or evaluate(spec, runtime, precision, target, accuracy, predictor, num_classes, family, trained)
        seen[key] = ev
        evaluations.append(ev)
        for b in budgets:  # > 0: over budget by that fraction (NSGA-II ranks infeasible trials by it)
            trial.set_constraint(b, ev.violations.get(b, 0.0))
        if log and len(evaluations) % 25 == 0:
            best = pick(evaluations)
            log(f"{target.key}: {len(evaluations)}/{trials} trials, {sum(e.feasible for e in seen.values())} feasible, "
                + (f"best {100 * best.accuracy:.1f}% at {best.latency_ms:.3f} ms" if best else "none feasible yet"))
        return ev.accuracy, ev.latency_ms, ev.model_kb

    # The first trials are the shipped uniform widths (each runtime and precision): the search
    # starts from what a release engineer would try by hand, so its pick is never worse than that.
    for spec in space.width_multiplier_specs().values():
        for runtime in runtimes:
            for precision in precisions:
                study.enqueue_trial({**{f"w_{n}": w for n, w in zip(space.channel_names, spec.channels)},
                                     **{f"d_{n}": d for n, d in zip(space.depth_names, spec.depths)},
                                     "runtime": runtime, "precision": precision})
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return SearchResult(target.key, trials, seed, sampler, evaluations, pareto(evaluations), pick(evaluations),
                        time.perf_counter() - t0)


def best_uniform(space: SearchSpace, target: DeviceTarget, accuracy, predictor: Predictor,
                 runtimes: tuple[str, ...] | None = None, precisions: tuple[str, ...] = PRECISIONS, num_classes: int = 12,
                 family=None) -> tuple[Evaluation | None, list[Evaluation]]:
    """The baseline a release engineer has without a search: the shipped width multipliers (full
    depth), each runtime and precision; the most accurate one inside the budgets."""
    evs = [evaluate(spec, rt, prec, target, accuracy, predictor, num_classes, family)
           for spec in space.width_multiplier_specs().values() for rt in (runtimes or (target.runtime,)) for prec in precisions]
    return pick(evs), evs
