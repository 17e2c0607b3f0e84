"""Runs every equivalence case of ``tests/cli/test_train_mpi.py`` in one process.

Usage: ``mpiexec -n P python tests/run_scripts/equivalence.py OUT_DIR [CASE ...]`` (or plain
``python``; no cases: all of them).
Each case is one quadratic run; its metrics land in ``OUT_DIR/<case>/metrics.jsonl``.
``crash OUT_DIR`` instead raises on one rank in round 3 (the abort handler must end the run).
"""

from __future__ import annotations

import sys

# algorithm -> extra overrides it needs to run on the quadratic
NEEDS = {"choco": ["compression.name=topk", "compression.ratio=0.5"],
         "d2": ["topology.weights=lazy_metropolis"],
         "beer": ["compression.name=topk", "compression.ratio=0.5"],
         **{name: ["algorithm.client_fraction=0.5", "algorithm.local_steps=2"]
            for name in ("fedprox", "scaffold", "mime", "mimelite")},
         "minibatch_sgd": ["algorithm.budget=2", "algorithm.accelerated=true",
                           "algorithm.client_fraction=0.5"],
         "local_mixvr": ["algorithm.budget=3", "algorithm.alpha=0.4"],
         # events from the [time] model: stragglers, latency, bandwidth; delay-adaptive step
         "async_sgd": ["time.straggler_fraction=0.3", "time.slowdown=10", "time.latency=0.01",
                       "time.bandwidth=1e5", "algorithm.step=delay_adaptive",
                       "algorithm.tau_c=3"],
         # the same events, pairs of ring neighbours whose rows travel between host ranks
         "async_gossip": ["time.straggler_fraction=0.3", "time.slowdown=10",
                          "time.latency=0.01", "time.bandwidth=1e5"]}
COMMON = ["problem.name=quadratic", "nodes=10", "problem.dim=5", "problem.sigma=0.3",
          "rounds=6", "eval_every=2", "checkpoint_every=3", "dtype=float64"]
#: The cases run on 2 ranks as well.
SMALL = ("dsgd-ring", "dsgd-onepeer", "gradient_tracking-ring", "dsgd-faults",
         "dsgd-time", "async_sgd-ring", "async_gossip-ring", "allreduce-cm-label_flip",
         "fedavg-secure", "allreduce-secure", "dsgd-privacy", "dsgd-privacy-poisson")
#: label_flip corrupts training labels, so its case is a classification run (the seeded
#: synthetic Gaussian mixture, an MLP of 16, iid shards: disjoint node data).
CLASSIFICATION = ["problem.name=classification", "data.name=synthetic", "data.partition=iid",
                  "problem.batch_size=8", "problem.hidden=[16]", "problem.test_subset=200",
                  *(o for o in COMMON if not o.startswith("problem."))]


def cases() -> dict[str, list[str]]:
    """Case name -> overrides: every registered algorithm on a ring, plus time-varying W(t)."""
    from gossip.algorithms import algorithm_names

    out = {}
    for name in algorithm_names():
        out[f"{name}-ring"] = [*COMMON, f"algorithm.name={name}", *NEEDS.get(name, [])]
    out["dsgd-matching"] = [*COMMON, "topology.schedule=random_matching",
                            "topology.name=complete"]
    out["dsgd-onepeer"] = [*COMMON, "topology.schedule=one_peer_exponential",
                           "algorithm.local_steps=2"]
    # [faults]: drops and crashes decided per (seed, message or node, round), on every rank
    out["dsgd-faults"] = [*COMMON, "faults.drop=0.3", "faults.crash=[[2, 1, 4]]",
                          "faults.crash_rate=0.1", "faults.recover_rate=0.5"]
    out["gradient_tracking-faults"] = [*COMMON, "algorithm.name=gradient_tracking",
                                       "faults.drop=0.3", "faults.symmetric=false",
                                       "faults.crash=[[7, 2]]"]
    out["fedavg-faults"] = [*COMMON, "algorithm.name=fedavg", "algorithm.client_fraction=0.5",
                            "faults.drop=0.3"]
    # secure aggregation: each rank masks its own clients from the pair seeds; dropouts
    # recovered; the modular sums are exact across ranks
    secure = ["algorithm.secure_aggregation=true", "algorithm.secure_aggregation_clip=100",
              "faults.drop=0.3"]
    out["fedavg-secure"] = [*out["fedavg-faults"], *secure[:2]]
    out["allreduce-secure"] = [*COMMON, "algorithm.name=allreduce", *secure,
                               "algorithm.secure_aggregation_double_mask=false"]
    # [time]: stragglers drawn from the seed; per-node bytes of every kind of collective
    timed = ["time.straggler_fraction=0.3", "time.slowdown=10", "time.latency=0.01",
             "time.bandwidth=1e5"]
    for name in ("dsgd", "relaysum_model", "allreduce", "fedavg"):
        out[f"{name}-time"] = [*out[f"{name}-ring"], *timed]
    out["relaysum_model-double"] = [*COMMON, "algorithm.name=relaysum_model",
                                    "algorithm.tree=double_binary"]
    out.update(byzantine_cases())
    out.update(privacy_cases())
    return out


def privacy_cases() -> dict[str, list[str]]:
    """``[privacy]`` DP-SGD: clipping and noise seeded by (seed, node, step, call), Poisson
    batches by (seed, node, step), on the logistic problem (the quadratic has no per-sample
    gradients)."""
    private = ["problem.name=logistic", "nodes=10", "problem.dim=5", "problem.batch_size=8",
               "rounds=6", "eval_every=2", "checkpoint_every=3", "dtype=float64",
               "privacy.clip=0.5", "privacy.noise_multiplier=1.0"]
    return {
        "dsgd-privacy": [*private, "algorithm.name=dsgd"],
        "fedavg-privacy": [*private, "algorithm.name=fedavg", "algorithm.client_fraction=0.5",
                           "algorithm.local_steps=2", "privacy.accountant=pld"],
        "dsgd-privacy-poisson": [*private, "algorithm.name=dsgd", "privacy.sampling=poisson"],
    }


def byzantine_cases() -> dict[str, list[str]]:
    """Every aggregator and every attack (label_flip on classification data)."""
    def case(alg, rule, attack, *extra, base=COMMON):
        given = [f"algorithm.aggregator={rule}"] if rule else []
        return [*base, f"algorithm.name={alg}", *given, f"attack.name={attack}",
                "attack.nodes=2", *extra]

    wm = "algorithm.worker_momentum=0.9"
    return {
        "allreduce-mean-sign_flip": case("allreduce", "mean", "sign_flip"),
        "allreduce-cm-alie": case("allreduce", "cm", "alie"),
        "allreduce-cm-alie-bucketing": case("allreduce", "cm", "alie", wm,
                                            "algorithm.bucketing=2"),
        "allreduce-cclip-alie-wm": case("allreduce", "cclip", "alie", wm),
        "allreduce-rfa-gaussian": case("allreduce", "rfa", "gaussian"),
        "allreduce-trimmed_mean-ipm": case("allreduce", "trimmed_mean", "ipm",
                                           "algorithm.aggregator_options={trim = 2}"),
        "fedavg-krum-ipm-wm": case("fedavg", "krum", "ipm", wm, "algorithm.client_fraction=0.8",
                                   "algorithm.aggregator_options={f = 2}"),
        "fedavg-multi_krum-alie": case("fedavg", "multi_krum", "alie",
                                       "algorithm.client_fraction=0.8"),
        "clipped_gossip-alie": case("clipped_gossip", None, "alie"),
        "robust_dsgd-gaussian": case("robust_dsgd", "trimmed_mean", "gaussian"),
        "dsgd-sign_flip": case("dsgd", None, "sign_flip"),
        "allreduce-cm-label_flip": case("allreduce", "cm", "label_flip", base=CLASSIFICATION),
    }


def run_cases(out_dir: str, comm=None, only=()) -> None:
    from gossip.config import load_config
    from gossip.runner.loop import run

    for case, overrides in cases().items():
        if only and case not in only:
            continue
        config = load_config(None, [*overrides, f"out='{out_dir}'", f"name='{case}'"])
        run(config, comm=comm, quiet=True)


def crash(out_dir: str) -> None:
    import torch

    from gossip.comm.factory import install_abort_handler, make_comm
    from gossip.config import load_config
    from gossip.problems import quadratic
    from gossip.problems.registry import register_problem
    from gossip.runner.loop import run

    @register_problem("crashing", quadratic.QuadraticConfig)
    class Crashing(quadratic.Quadratic):
        def gradients(self, X: torch.Tensor, nodes: range, step: int):
            if 5 in nodes and step == 3:
                raise RuntimeError("node 5 failed at step 3")
            return super().gradients(X, nodes, step)

    config = load_config(None, ["problem.name=crashing", "nodes=8", "rounds=50",
                                f"out='{out_dir}'", "name=crash"])
    comm = make_comm(8)
    install_abort_handler(comm)
    run(config, comm=comm, quiet=True)


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash(sys.argv[2])
    else:
        from gossip.comm.factory import install_abort_handler, make_comm

        comm = make_comm(10)
        install_abort_handler(comm)
        run_cases(sys.argv[1], comm, sys.argv[2:])
