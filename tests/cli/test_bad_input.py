"""Bad input, table-driven: every case exits 2 with one line on stderr and no traceback.

Each row is a command line (``train`` rows start from a fast quadratic run in a temporary
``--out``) and the parts its message must contain: the key at fault and, where the key has a
set of allowed values, that set. Rows run in process through :func:`gossip.cli.main`; a few
run as real processes, and two under ``mpiexec -n 2``, where rank 0 alone prints the line and
every rank exits 2 (issue 11, items 8-10).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gossip.cli import main
from tests.mpi_util import REPO_ROOT, requires_mpi, run_mpi

#: The start of every ``train`` row: a quadratic run of two rounds, nothing printed but errors.
QUICK = ["--quiet", "--set", "problem.name=quadratic", "--set", "rounds=2"]
ALGORITHMS = "allreduce, async_gossip, async_sgd, beer, choco, clipped_gossip, d2, dsgd, fedavg, " \
             "fedprox, gradient_tracking, local_mixvr, mime, mimelite, minibatch_sgd, " \
             "naive_compressed_dsgd, relaysum_grad, relaysum_model, robust_dsgd, scaffold"
COMPRESSING = "allreduce, beer, choco, fedavg, naive_compressed_dsgd"
FOLLOWS_W = "beer, choco, clipped_gossip, d2, dsgd, gradient_tracking, naive_compressed_dsgd, " \
            "robust_dsgd"
CHOCO_TOPK = ["algorithm.name=choco", "compression.name=topk"]


def _sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def train(*overrides: str, flags: tuple[str, ...] = ()) -> list[str]:
    return ["train", *_sets(*overrides), *flags]


# (id, argv, parts of the message)
CASES = [
    # -- top-level keys
    ("seed-negative", train("seed=-1"), ["seed", "[0, 9223372036854775807]", "-1"]),
    ("seed-huge", train("seed=99999999999999999999"), ["seed", "[0, 9223372036854775807]"]),
    ("seed-float", train("seed=1.5"), ["seed must be an integer", "1.5"]),
    ("nodes-one", train("nodes=1"), ["nodes must be >= 2", "got 1"]),
    ("nodes-text", train("nodes=x"), ["nodes must be an integer", "'x'"]),
    ("rounds-zero", train("rounds=0"), ["rounds must be >= 1"]),
    ("eval-every-zero", train("eval_every=0"), ["eval_every must be >= 1"]),
    ("threads-negative", train("threads=-1"), ["threads must be >= 0"]),
    ("device", train("device=tpu"), ["device", "[auto, cpu, cuda]", "'tpu'"]),
    ("dtype", train("dtype=float16"), ["dtype", "[float32, float64]", "'float16'"]),
    ("checkpoint-every", train("checkpoint_every=-1"), ["checkpoint_every must be >= 0"]),
    ("name-parent", train(flags=("--name", "../x")), ["name", "no '/'", "'../x'"]),
    ("name-slash", train("name=a/b"), ["name", "one folder name inside out", "'a/b'"]),
    ("name-dotdot", train(flags=("--name", "..")), ["name", "not '.' or '..'", "got '..'"]),
    ("name-backslash", train("name='a\\b'"), ["name", "one folder name inside out"]),
    ("unknown-top-key", train("foo=1"), ["'foo'", "valid top-level keys: checkpoint_every",
                                         "[topology]", "[model]"]),
    ("unknown-section", train("bogus.x=1"), ["'bogus'", "valid: topology, algorithm, problem, "
                                             "compression, data, model"]),
    ("nested-too-deep", train("algorithm.a.b=1"), ["algorithm.a.b", "section.key"]),
    ("override-no-value", train("nodes"), ["'nodes'", "key=value"]),
    ("section-not-table", train("topology=3"), ["[topology] must be a table"]),
    # -- [topology]
    ("topology-name", train("topology.name=moon"), ["topology", "'moon'", "valid: binary_tree",
                                                    "ring", "torus"]),
    ("topology-weights", train("topology.weights=heavy"),
     ["topology.weights", "'heavy'", "lazy_metropolis", "metropolis, uniform"]),
    ("topology-schedule", train("topology.schedule=sometimes"),
     ["topology.schedule", "'sometimes'", "churn", "one_peer_exponential", "static"]),
    ("topology-key", train("topology.foo=1"), ["topology.foo", "valid keys of [topology]:",
                                               "weights"]),
    ("torus-not-square", train("topology.name=torus", "nodes=7"),
     ["topology.name", "torus", "perfect square", "n=7"]),
    ("churn-offline", train("topology.schedule=churn", "topology.offline=1.5"),
     ["topology.offline", "0 <= offline < 1", "1.5"]),
    ("file-without-path", train("topology.name=file"), ["topology.name", "path="]),
    ("topology-seed", train("topology.schedule=random_matching", "topology.seed=-5"),
     ["topology.seed", "[0, 9223372036854775807]", "-5"]),
    ("erdos-renyi-p", train("topology.name=erdos_renyi", "topology.p=0.0"),
     ["topology.p", "0 < p <= 1"]),
    # -- [algorithm], run-level keys
    ("algorithm-name", train("algorithm.name=sgdx"), ["algorithm", "'sgdx'", ALGORITHMS]),
    ("algorithm-name-type", train("algorithm.name=1"), ["algorithm.name must be a string"]),
    ("lr-zero", train("algorithm.lr=0"), ["algorithm.lr must be > 0"]),
    ("lr-overflow", train("algorithm.lr=1e400"), ["algorithm.lr must be a finite number",
                                                  "inf"]),
    ("lr-minus-inf", train("algorithm.lr=-inf"), ["algorithm.lr", "float", "'-inf'"]),
    ("lr-nan", train("algorithm.lr=nan"), ["algorithm.lr", "float", "'nan'"]),
    ("lr-schedule", train("algorithm.lr_schedule=linear"),
     ["algorithm.lr_schedule", "[constant, cosine, step]", "'linear'"]),
    ("cosine-lr-min-above-lr", train("algorithm.lr_schedule=cosine", "algorithm.lr_min=0.5"),
     ["algorithm.lr_min=0.5", "<= algorithm.lr=0.1", "cosine"]),
    ("lr-decay-rounds", train("algorithm.lr_decay_rounds=0"),
     ["algorithm.lr_decay_rounds must be >= 1"]),
    ("lr-decay-factor", train("algorithm.lr_decay_factor=0"),
     ["algorithm.lr_decay_factor must be > 0"]),
    ("warmup", train("algorithm.warmup_rounds=-1"), ["algorithm.warmup_rounds must be >= 0"]),
    ("lr-min-negative", train("algorithm.lr_min=-1"), ["algorithm.lr_min must be >= 0"]),
    # -- [algorithm], each algorithm's own keys
    ("dsgd-momentum", train("algorithm.momentum=1.0"), ["algorithm.momentum", "[0, 1)"]),
    ("dsgd-momentum-kind", train("algorithm.momentum_kind=sideways"),
     ["algorithm.momentum_kind", "[local, quasi_global]", "'sideways'"]),
    ("dsgd-local-steps", train("algorithm.local_steps=0"), ["algorithm.local_steps must be >= 1"]),
    ("dsgd-nesterov", train("algorithm.nesterov=1"), ["algorithm.nesterov must be true or false"]),
    ("dsgd-foreign-key", train("algorithm.gamma=0.5"),
     ["algorithm.gamma", "valid keys of [algorithm]:", "momentum", "nesterov"]),
    ("choco-gamma-above-one", train("algorithm.name=choco", "algorithm.gamma=1.5"),
     ["algorithm.gamma", "(0, 1]", "1.5"]),
    ("choco-gamma-zero", train("algorithm.name=choco", "algorithm.gamma=0"),
     ["algorithm.gamma", "(0, 1]"]),
    ("beer-gamma", train("algorithm.name=beer", "algorithm.gamma=2"),
     ["algorithm.gamma", "(0, 1]"]),
    ("fedavg-client-fraction", train("algorithm.name=fedavg", "algorithm.client_fraction=0"),
     ["algorithm.client_fraction", "(0, 1]"]),
    ("fedavg-server-momentum", train("algorithm.name=fedavg", "algorithm.server_momentum=1"),
     ["algorithm.server_momentum", "[0, 1)"]),
    ("secagg-bits", train("algorithm.name=fedavg", "algorithm.secure_aggregation_bits=64"),
     ["algorithm.secure_aggregation_bits", "[16, 48]", "64"]),
    ("secagg-threshold", train("algorithm.name=allreduce",
                               "algorithm.secure_aggregation_threshold=0"),
     ["algorithm.secure_aggregation_threshold", "(0, 1]"]),
    ("secagg-median", train("algorithm.name=fedavg", "algorithm.secure_aggregation=true",
                            "algorithm.aggregator=cm"),
     ["algorithm.secure_aggregation=true", "algorithm.aggregator='cm'"]),
    ("secagg-compression", train("algorithm.name=allreduce", "algorithm.secure_aggregation=true",
                                 "compression.name=topk"),
     ["algorithm.secure_aggregation=true", "[compression]", "compression.name='none'"]),
    ("secagg-one-client", train("algorithm.name=fedavg", "algorithm.secure_aggregation=true",
                                "nodes=8"),
     ["algorithm.secure_aggregation", "at least 2 clients per round (has 1)"]),
    ("relaysum-tree", train("algorithm.name=relaysum_model", "algorithm.tree=star"),
     ["algorithm.tree", "[bfs, chain, binary, double_binary]", "'star'"]),
    ("relaysum-root", train("algorithm.name=relaysum_grad", "algorithm.root=-1"),
     ["algorithm.root must be >= 0"]),
    ("relaysum-time-varying", train("algorithm.name=relaysum_model",
                                    "topology.schedule=one_peer_exponential"),
     ["topology.schedule='one_peer_exponential'", "algorithm.name='relaysum_model'", FOLLOWS_W]),
    ("allreduce-time-varying", train("algorithm.name=allreduce", "topology.name=complete",
                                     "topology.schedule=random_matching"),
     ["topology.schedule='random_matching'", "algorithm.name='allreduce'", FOLLOWS_W]),
    ("d2-metropolis-even-ring", train("algorithm.name=d2"),
     ["algorithm.name='d2'", "lambda_min(W) > -1/3", "-0.333333", "topology.weights",
      "lazy_metropolis or lazy_uniform"]),
    ("d2-directed-weights", train("algorithm.name=d2", "topology.name=exponential",
                                  "topology.weights=in_uniform"),
     ["algorithm.name='d2'", "symmetric W", "topology.weights", "lazy_metropolis"]),
    # -- [compression]
    ("dsgd-compression", train("compression.name=topk", "compression.ratio=0.5"),
     ["compression.name='topk'", "algorithm.name='dsgd'", COMPRESSING]),
    ("gt-compression", train("algorithm.name=gradient_tracking", "compression.name=qsgd"),
     ["compression.name='qsgd'", "algorithm.name='gradient_tracking'", COMPRESSING]),
    ("d2-compression", train("algorithm.name=d2", "topology.weights=lazy_metropolis",
                             "compression.name=sign"),
     ["compression.name='sign'", "algorithm.name='d2'", COMPRESSING]),
    ("relaysum-compression", train("algorithm.name=relaysum_grad", "compression.name=fp16"),
     ["compression.name='fp16'", COMPRESSING]),
    ("compression-name", train("algorithm.name=choco", "compression.name=zip"),
     ["compression", "'zip'", "valid: bf16, fp16, lowrank, none, qsgd, randomk, sign, topk"]),
    ("compression-ratio-zero", train(*CHOCO_TOPK, "compression.ratio=0"),
     ["compression.ratio", "(0, 1]"]),
    ("compression-ratio-above-one", train(*CHOCO_TOPK, "compression.ratio=1.5"),
     ["compression.ratio", "(0, 1]", "1.5"]),
    ("compression-key", train(*CHOCO_TOPK, "compression.foo=1"),
     ["compression.foo", "valid keys of [compression]:", "ratio"]),
    ("compression-ratio-and-k", train(*CHOCO_TOPK, "compression.ratio=0.5", "compression.k=3"),
     ["compression.ratio", "compression.k", "not both"]),
    ("qsgd-levels", train("algorithm.name=choco", "compression.name=qsgd",
                          "compression.levels=0"), ["compression.levels", "1..127"]),
    # -- [problem]
    ("problem-name", train("problem.name=cubic"),
     ["problem", "'cubic'", "valid: classification, logistic, quadratic"]),
    ("quadratic-dim", train("problem.dim=0"), ["problem.dim must be >= 1"]),
    ("quadratic-sigma", train("problem.sigma=-1"), ["problem.sigma must be >= 0"]),
    ("quadratic-a-min", train("problem.a_min=0"), ["problem.a_min must be > 0"]),
    ("problem-key", train("problem.foo=1"), ["problem.foo", "valid keys of [problem]:", "sigma"]),
    ("logistic-batch", train("problem.name=logistic", "problem.batch_size=100"),
     ["problem.batch_size", "problem.samples_per_node=64", "100"]),
    ("logistic-reg", train("problem.name=logistic", "problem.reg=0"),
     ["problem.reg must be > 0"]),
    ("classification-batch", train("problem.name=classification", "data.name=synthetic",
                                   "problem.batch_size=100000"),
     ["problem.batch_size=100000", "training samples", "it must be in [1, "]),
    ("classification-model", train("problem.name=classification", "problem.model=transformer"),
     ["problem.model", "[lenet, logreg, mlp, resnet20]", "'transformer'"]),
    ("classification-partition", train("problem.name=classification", "problem.partition=x"),
     ["problem.partition", "[iid, dirichlet, dirichlet_balanced, shards, quantity_skew]"]),
    ("classification-alpha", train("problem.name=classification", "problem.alpha=0"),
     ["problem.alpha must be > 0"]),
    ("classification-backend", train("problem.name=classification", "problem.backend=gpu"),
     ["problem.backend", "[auto, fused, vmap, loop]", "'gpu'"]),
    # -- [data] and [model]
    ("data-name", train("problem.name=classification", "data.name=svhn"),
     ["problem.dataset", "[cifar10, fashion_mnist, mnist, synthetic]", "'svhn'"]),
    ("data-partition", train("problem.name=classification", "data.partition=weird"),
     ["problem.partition", "[iid, dirichlet, dirichlet_balanced, shards, quantity_skew]",
      "'weird'"]),
    ("data-key", train("problem.name=classification", "data.bogus=1"),
     ["data.bogus", "'classification'", "its keys: alpha", "partition"]),
    ("data-for-quadratic", train("data.name=mnist"),
     ["data.name", "'quadratic'", "its keys: a_max"]),
    ("data-twice", train("problem.name=classification", "data.name=mnist",
                         "problem.dataset=mnist"), ["data.name", "problem.dataset", "once"]),
    ("data-not-table", train("data=3"), ["[data] must be a table"]),
    ("cifar-without-root", train("problem.name=classification", "data.name=cifar10"),
     ["cifar10 needs data.root", "data_batch_1..5, test_batch"]),
    ("fashion-missing-root", train("problem.name=classification", "data.name=fashion_mnist",
                                   "data.root=/nonexistent"),
     ["/nonexistent does not exist", "train-images-idx3-ubyte"]),
    ("model-name", train("problem.name=classification", "model.name=resnet999"),
     ["problem.model", "[lenet, logreg, mlp, resnet20]", "'resnet999'"]),
    ("model-hidden", train("problem.name=classification", "model.hidden=[0]"),
     ["problem.hidden", "positive integers", "[0]"]),
    # -- command-line flags of train
    ("config-missing", ["train", "--config", "{tmp}/none.toml"], ["none.toml", "does not exist"]),
    ("config-directory", ["train", "--config", "{tmp}"], ["is a directory"]),
    ("config-device", ["train", "--config", "/dev/null"], ["/dev/null", "not a regular file"]),
    ("config-binary", ["train", "--config", "{tmp}/binary.toml"],
     ["binary.toml", "is not a TOML file: not UTF-8 text"]),
    ("config-bad-toml", ["train", "--config", "{tmp}/bad.toml"],
     ["bad.toml", "is not a TOML file:", "line 1"]),
    ("config-inf", ["train", "--config", "{tmp}/inf.toml"],
     ["algorithm.lr must be a finite number", "inf"]),
    ("config-nan", ["train", "--config", "{tmp}/nan.toml"],
     ["problem.sigma must be a finite number", "nan"]),
    ("config-huge-seed", ["train", "--config", "{tmp}/seed.toml"],
     ["seed", "[0, 9223372036854775807]", "99999999999999999999"]),
    ("resume-not-a-run", ["train", "--resume", "{tmp}"], ["--resume", "no config.toml"]),
    ("resume-fewer-rounds", ["train", "--resume", "{run}", "--set", "rounds=2"],
     ["rounds=2", "done 4 rounds", "rounds >= 4"]),
    ("resume-new-out", ["train", "--resume", "{run}", "--out", "{tmp}/elsewhere"],
     ["'out'", "only rounds, eval_every, checkpoint_every, device may change"]),
    ("resume-new-name", ["train", "--resume", "{run}", "--name", "other"],
     ["'name'", "'other'", "only rounds, eval_every, checkpoint_every, device may change"]),
    ("resume-new-seed", ["train", "--resume", "{run}", "--set", "seed=3"],
     ["'seed'", "only rounds, eval_every, checkpoint_every, device may change"]),
    # -- other subcommands
    ("topology-too-many-nodes", ["topology", "report", "--nodes", "100000", "--topologies",
                                 "ring"], ["--nodes", "[2, 8192]", "100000"]),
    ("topology-one-node", ["topology", "report", "--nodes", "1"], ["--nodes", "[2, 8192]"]),
    ("topology-format", ["topology", "report", "--format", "xml"],
     ["--format", "['table', 'json', 'csv']", "'xml'"]),
    ("topology-report-name", ["topology", "report", "--topologies", "moon"],
     ["'moon'", "'ring'", "'torus'"]),
    ("topology-report-weights", ["topology", "report", "--nodes", "8", "--topologies", "ring",
                                 "--weights", "heavy"], ["'heavy'", "'lazy_metropolis'"]),
    ("topology-show-nodes", ["topology", "show", "ring", "--nodes", "8,16"],
     ["one node count", "'8,16'"]),
    ("sweep-grid", ["sweep", "--grid", "nodes", "--out", "{tmp}/sweep"],
     ["--grid 'nodes'", "key=v1,v2"]),
    ("sweep-bad-point", ["sweep", "--grid", "algorithm.lr=0.1,-1", "--set",
                         "problem.name=quadratic", "--out", "{tmp}/sweep"],
     ["algorithm.lr must be > 0", "-1.0"]),
    ("sweep-mpi-zero", ["sweep", "--mpi", "0", "--grid", "algorithm.lr=0.1", "--out",
                        "{tmp}/sweep"], ["--mpi", "positive number of ranks"]),
    ("data-dataset", ["data", "show", "--dataset", "svhn"],
     ["'svhn'", "valid: cifar10, fashion_mnist, mnist, synthetic"]),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-round quadratic run to resume."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *QUICK, "--set", "rounds=4", "--out", str(out), "--name", "r"]) == 0
    return out / "r"


def _argv(argv: list[str], tmp, run) -> list[str]:
    argv = [a.replace("{tmp}", str(tmp)).replace("{run}", str(run)) for a in argv]
    if argv[0] == "train" and "--resume" not in argv:
        argv = ["train", *QUICK, "--out", str(tmp / "out"), *argv[1:]]
    return argv


def assert_one_error_line(err: str, parts: list[str]) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("gossip ") and ": error: " in line, line
    assert "Traceback" not in err
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"
    return line


def test_the_table_covers_every_section_and_sixty_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    text = " ".join(" ".join(argv) for _, argv, _ in CASES)
    for part in ("seed=", "topology.", "algorithm.", "problem.", "data.", "model.",
                 "compression.", "--config", "--resume", "--name", "--out"):
        assert part in text, part


@pytest.mark.parametrize("argv, parts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(argv, parts, tmp_path, finished_run, capsys):
    (tmp_path / "binary.toml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    (tmp_path / "bad.toml").write_text("nodes = = 3\n")
    (tmp_path / "inf.toml").write_text("[algorithm]\nlr = inf\n")
    (tmp_path / "nan.toml").write_text("[problem]\nname = 'quadratic'\nsigma = nan\n")
    (tmp_path / "seed.toml").write_text("seed = 99999999999999999999\n")
    before = sorted(p.name for p in finished_run.iterdir())
    assert main(_argv(argv, tmp_path, finished_run)) == 2
    out, err = capsys.readouterr()
    assert_one_error_line(err, parts)
    assert out == ""
    assert not list(tmp_path.glob("**/config.toml"))  # no run folder was made
    assert sorted(p.name for p in finished_run.iterdir()) == before


def test_a_resume_refused_leaves_the_run_as_it_was(finished_run, tmp_path, capsys):
    saved = (finished_run / "config.toml").read_text()
    metrics = (finished_run / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(finished_run), "--set", "rounds=3"]) == 2
    assert (finished_run / "config.toml").read_text() == saved
    assert (finished_run / "metrics.jsonl").read_text() == metrics
    capsys.readouterr()
    assert main(["train", "--resume", str(finished_run), "--set", "rounds=4", "--quiet"]) == 0


def test_help_shows_the_default_runs_use(capsys):
    from gossip.config import load_config

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.split()[:1] == ["algorithm.lr"])
    assert line.split()[1:3] == ["float", "default"]
    shown = float(line.split()[3])
    for name in ("dsgd", "choco", "relaysum_model"):
        assert load_config(None, [f"algorithm.name={name}"])["algorithm"]["lr"] == shown


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("args, part", [
    (["train", "--quiet", "--set", "seed=-1"], "seed must be in [0, "),
    (["train", "--quiet", "--config", "."], "is a directory"),
    (["train", "--quiet", "--config", "/dev/null"], "not a regular file"),
    (["topology", "report", "--nodes", "100000", "--topologies", "ring"], "[2, 8192]"),
])
def test_bad_input_in_a_real_process(args, part, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gossip", *args], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, [part])
    assert proc.stdout == ""


def _outside_banners(stderr: str) -> list[str]:
    """Lines of ``stderr`` outside the launcher's dashed banner blocks."""
    kept, inside = [], False
    for line in stderr.splitlines():
        if line.strip() and set(line.strip()) == {"-"}:
            inside = not inside
        elif line.strip() and not inside:
            kept.append(line)
    return kept


@requires_mpi
@pytest.mark.parametrize("overrides, part", [
    (["algorithm.lr=-1"], "algorithm.lr must be > 0"),  # found before MPI starts
    (["algorithm.name=d2"], "lambda_min(W) > -1/3"),  # found by the build, over MPI
])
def test_under_mpiexec_one_line_from_rank_0_and_exit_2(overrides, part, tmp_path):
    args = ["-m", "gossip", "train", "--quiet", "--out", str(tmp_path), *QUICK,
            *_sets("nodes=4", *overrides)]
    proc = run_mpi(2, args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    ours = _outside_banners(proc.stderr)
    assert len(ours) == 1 and ours[0].startswith("gossip train: error: "), proc.stderr
    assert part in ours[0]
    assert proc.stderr.count("gossip train: error:") == 1


def test_sweep_reads_the_error_line_not_the_banner():
    from gossip.runner.sweep import error_line

    banner = "-" * 74 + ("\nprterun detected that one or more processes exited with non-zero "
                         "status,\n   Exit code:    2\n") + "-" * 74
    assert error_line("gossip train: error: nodes must be >= 2, got 1\n" + banner) == \
        "nodes must be >= 2, got 1"
    assert error_line("RuntimeError: boom\n" + banner) == "RuntimeError: boom"
    assert error_line("") == "(no error output)"


@requires_mpi
def test_sweep_mpi_reports_the_runs_error_not_the_banner(tmp_path):
    """A batch larger than any node's data is found when the problem is built, inside
    ``mpiexec`` (the sweep's own check builds only the network): the sweep's one line is
    that refusal, not the launcher's banner."""
    proc = subprocess.run(
        [sys.executable, "-m", "gossip", "sweep", "--mpi", "2", "--out", str(tmp_path),
         "--grid", "problem.batch_size=100000",
         *_sets("problem.name=classification", "data.name=synthetic", "nodes=4", "rounds=2")],
        env=_env(), capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    progress, error = proc.stderr.strip().splitlines()  # "[1/1] <run>", then the error
    assert progress.startswith("[1/1] ")
    assert_one_error_line(error, ["gossip sweep: error: run problem.batch_size-100000: ",
                                  "problem.batch_size=100000 is more than any node holds"])
    assert "prterun" not in proc.stderr and "Exit code" not in proc.stderr
