"""Faults: a full disk, an unwritable out, a cut metrics line, SIGINT/SIGTERM in process and
under mpiexec, a second process in the same run folder. Each gives one line and a non-zero exit
code, leaves no temporary file, and leaves a run folder that ``--resume`` continues to the
numbers of the uninterrupted run (docs/reliability.md)."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.runs import load_run
from gossip.cli import main as cli_main
from gossip.cli.train import main
from gossip.config import load_config
from gossip.errors import OutputError
from gossip.runner import atomic
from gossip.runner.launch_env import mpi_env
from gossip.runner.lock import RunLock
from gossip.runner.loop import run
from gossip.runner.rundir import MetricsWriter, new_run_dir, read_metrics
from tests.mpi_util import REPO_ROOT, mpiexec, requires_mpi, run_mpi

BASE = ["problem.name=quadratic", "nodes=4", "problem.dim=3", "eval_every=3"]
QUICK = [a for o in BASE for a in ("--set", o)] + ["--quiet"]
TIMES = ("wall_time", "compute_time", "comm_time")


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def one_line(err: str) -> str:
    """The one line of ``err`` (a sweep's progress lines ``[k/n] point`` aside)."""
    lines = [line for line in err.splitlines() if line.strip() and not re.match(r"\[\d+/\d+\] ",
                                                                             line)]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp-*"))


# -- full disk and cut lines ---------------------------------------------------------------------


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_metrics_line_cut_by_a_full_disk_is_rolled_back(tmp_path, monkeypatch):
    """A write that stops half-way (ENOSPC after some bytes) leaves the file at its last whole
    line, and says so in one line."""
    writer = MetricsWriter(tmp_path / "metrics.jsonl", [{"round": 1}])
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        no_space()

    monkeypatch.setattr(atomic.os, "write", half_then_full)
    with pytest.raises(OutputError, match=r"metrics.jsonl': No space left on device \(ENOSPC\)"):
        writer.append({"round": 2, "train_loss": 0.5})
    monkeypatch.undo()
    writer.append({"round": 3})
    writer.close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"round": 1}\n{"round": 3}\n'


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch, step):
    target = tmp_path / "summary.json"
    target.write_text("old\n")

    def data(f):
        f.write(b"new, cut")
        if step == "write":
            no_space()

    if step != "write":
        monkeypatch.setattr(atomic.os, step, no_space)
    with pytest.raises(OutputError) as err:
        atomic.write_atomic(target, data)
    assert str(err.value) == f"cannot write {str(target)!r}: No space left on device (ENOSPC)"
    assert target.read_text() == "old\n" and debris(tmp_path) == []


def test_checkpoint_on_a_full_disk_fails_with_one_line_and_no_temp(tmp_path, monkeypatch,
                                                                   capsys):
    """ENOSPC while writing a checkpoint (the fake layer: ``os.fsync`` of the temporary file
    fails): exit 2, one line naming the file, no temporary file, the previous checkpoint kept."""
    assert main([*QUICK, "--set", "rounds=3", "--out", str(tmp_path), "--name", "r"]) == 0
    real_fsync = os.fsync

    def fsync(fd):
        if ".state-round6-" in os.readlink(f"/proc/self/fd/{fd}"):
            no_space()
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    capsys.readouterr()
    code = main(["--resume", str(tmp_path / "r"), "--set", "rounds=9", "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "state-round6-rank0.pt" in line and "ENOSPC" in line, line
    assert debris(tmp_path) == []
    manifest = json.loads((tmp_path / "r" / "checkpoints" / "manifest.json").read_text())
    assert manifest["round"] == 3


def _mount_tmpfs(folder: Path, size: str, *options: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    opts = ",".join([f"size={size}", *options])
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)],
                          capture_output=True, timeout=10)
    return proc.returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs at ``tmp_path/fs`` (skipped where mounting is not allowed)."""
    mounted = []

    def make(size: str, *options: str) -> Path:
        folder = tmp_path / f"fs{len(mounted)}"
        if not _mount_tmpfs(folder, size, *options):
            pytest.skip("mounting a tmpfs needs root")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=10)


def test_full_tmpfs_end_to_end(tmpfs, capsys):
    """A real full disk: a 64 KiB tmpfs, a run whose checkpoints (about 35 KiB each) fill it."""
    fs = tmpfs("64k")
    code = main([*QUICK, "--set", "problem.dim=600", "--set", "rounds=30", "--out", str(fs),
                 "--name", "r"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "No space left on device" in line, line
    assert debris(fs) == []
    manifest = json.loads((fs / "r" / "checkpoints" / "manifest.json").read_text())
    assert [r["round"] for r in read_metrics(fs / "r")] == [3, 6]
    assert manifest["round"] == 3


def test_read_only_out(tmpfs, tmp_path, capsys):
    """train, plot and sweep into a read-only file system: one line each, exit 2."""
    assert main([*QUICK, "--set", "rounds=3", "--out", str(tmp_path), "--name", "ok"]) == 0
    ro = tmpfs("1m", "ro")
    for argv in (["train", *QUICK, "--set", "rounds=3", "--out", str(ro)],
                 ["plot", str(tmp_path / "ok"), "--out", str(ro / "plots")],
                 ["sweep", "--grid", "algorithm.lr=0.1,0.05", *QUICK[:-1], "--out", str(ro)]):
        capsys.readouterr()
        assert cli_main(argv) == 2, argv
        assert "Read-only file system" in one_line(capsys.readouterr().err)
    assert sorted(os.listdir(ro)) == []


@pytest.mark.parametrize("command", ["train", "plot", "sweep"])
@pytest.mark.parametrize("out", ["/proc/gossip-x", "FILE", "FILE/sub"])
def test_unwritable_out(tmp_path, capsys, command, out):
    """An ``--out`` that cannot hold folders (in /proc, a regular file, below one)."""
    (tmp_path / "FILE").write_text("")
    out = out.replace("FILE", str(tmp_path / "FILE"))
    if command == "plot":
        assert main([*QUICK, "--set", "rounds=3", "--out", str(tmp_path), "--name", "ok"]) == 0
        argv = ["plot", str(tmp_path / "ok"), "--out", out]
    elif command == "sweep":
        argv = ["sweep", "--grid", "algorithm.lr=0.1,0.05", *QUICK[:-1], "--out", out]
    else:
        argv = ["train", *QUICK, "--set", "rounds=3", "--out", out]
    capsys.readouterr()
    assert cli_main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"gossip {command}: error: cannot ")
    if "FILE" in argv[-1] or str(tmp_path) in out:
        assert "is a file, not a folder" in line, line


def test_cut_last_metrics_line_is_ignored_and_resume_drops_it(tmp_path, capsys):
    """A crash in the middle of a line (the last line has no newline): readers keep the whole
    records, and ``--resume`` rewrites the file from the checkpoint."""
    assert main([*QUICK, "--set", "rounds=6", "--out", str(tmp_path), "--name", "full"]) == 0
    assert main([*QUICK, "--set", "rounds=3", "--out", str(tmp_path), "--name", "cut"]) == 0
    metrics = tmp_path / "cut" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"round": 4, "train_lo')
    assert [r["round"] for r in read_metrics(tmp_path / "cut")] == [3]
    assert [r["round"] for r in load_run(tmp_path / "cut").metrics] == [3]
    capsys.readouterr()
    assert cli_main(["compare", str(tmp_path / "cut")]) == 0
    assert main(["--resume", str(tmp_path / "cut"), "--set", "rounds=6", "--quiet"]) == 0
    assert metrics.read_text().endswith("}\n")
    assert strip_times(read_metrics(tmp_path / "cut")) == strip_times(
        read_metrics(tmp_path / "full"))


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_resume_is_refused(tmp_path, capsys):
    """While one process holds the run folder, a second ``--resume`` fails at once (exit 2,
    one line) and changes nothing."""
    assert main([*QUICK, "--set", "rounds=3", "--out", str(tmp_path), "--name", "r"]) == 0
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    holder = RunLock(tmp_path / "r")
    capsys.readouterr()
    code = main(["--resume", str(tmp_path / "r"), "--set", "rounds=6", "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "is in use by another gossip process" in line
    assert f"pid {os.getpid()}" in line
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before
    holder.release()
    assert main(["--resume", str(tmp_path / "r"), "--set", "rounds=6", "--quiet"]) == 0


def test_default_names_do_not_collide(tmp_path, monkeypatch):
    """Two unnamed runs started in the same second get two folders."""
    monkeypatch.setattr("gossip.runner.experiment.default_name", lambda a, t: "same")
    cfg = load_config(None, [*BASE, "rounds=3", f"out='{tmp_path}'"])
    first, second = run(cfg, quiet=True), run(cfg, quiet=True)
    assert (first["run_dir"], second["run_dir"]) == (str(tmp_path / "same"),
                                                     str(tmp_path / "same-2"))
    assert new_run_dir(tmp_path, "same", unique=True) == tmp_path / "same-3"


# -- interrupts ----------------------------------------------------------------------------------


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _interrupt(cmd, env, run_dir: Path, send, ready=lambda: True) -> tuple[int, str, int]:
    """Start ``cmd``, wait for a checkpoint (its manifest, and ``ready()``), ``send(proc)``;
    returns (exit code, stderr, checkpoint round). The process group is killed on a
    timeout."""
    proc = _start(cmd, env)
    manifest = run_dir / "checkpoints" / "manifest.json"

    def waiting() -> bool:
        try:
            return not (manifest.exists() and ready())
        except (OSError, ValueError):  # the manifest is being replaced
            return True

    try:
        deadline = time.monotonic() + 120
        while waiting() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not waiting(), proc.communicate(timeout=5)
        send(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, err, json.loads(manifest.read_text())["round"]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1]
                                            .split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


LONG = [*QUICK, "--set", "rounds=100000000"]


def _same_as_uninterrupted(tmp_path, run_dir: Path, rounds: int, exact: bool) -> None:
    full = run(load_config(None, [*BASE, f"rounds={rounds}", f"out='{tmp_path}'",
                                  "name=uninterrupted"]), quiet=True)
    got, want = strip_times(read_metrics(run_dir)), strip_times(read_metrics(full["run_dir"]))
    assert [r["round"] for r in got] == [r["round"] for r in want]
    for a, b in zip(got, want):
        for key in b:
            same = a[key] == b[key] if exact or not isinstance(b[key], float) else \
                math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-12)
            assert same, (key, a, b)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_in_process_checkpoints_and_resumes(tmp_path, capsys, sig):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "r"
    cmd = [sys.executable, "-m", "gossip", "train", *LONG, "--out", str(tmp_path), "--name", "r"]
    code, err, done = _interrupt(cmd, env, run_dir, lambda p: p.send_signal(sig))
    line = one_line(err)
    assert code == 128 + sig, err
    assert line == (f"gossip train: interrupted by {sig.name} after round {done}: checkpoint "
                    f"of round {done} written in {run_dir}; resume with: python -m gossip "
                    f"train --resume {run_dir}")
    assert debris(run_dir) == []
    stopped = json.loads((run_dir / "summary.json").read_text())
    assert (stopped["interrupted"], stopped["rounds_done"]) == (True, done)
    assert main(["--resume", str(run_dir), "--set", f"rounds={done + 4}", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["interrupted"] is False
    _same_as_uninterrupted(tmp_path, run_dir, done + 4, exact=True)


@requires_mpi
def test_signals_under_mpiexec_and_a_refused_second_job(tmp_path):
    """1. SIGTERM to every rank (what a batch system's cancel does): the ranks agree on the
    round, write its checkpoint, rank 0 prints the line once, mpiexec passes 143 through.
    2. A second job on the folder (lock held) is refused on every rank: exit 2, one line.
    3. The resumed run, Ctrl-C (SIGINT) to mpiexec itself: Open MPI 5 sends SIGTERM to the ranks
    and kills them a moment later (exit 1, their output dropped); the folder still holds a
    complete checkpoint. 4. Its resume equals the uninterrupted run."""
    run_dir = tmp_path / "r"
    manifest = run_dir / "checkpoints" / "manifest.json"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "gossip", "train", *LONG, "--out",
           str(tmp_path), "--name", "r"]

    def term_ranks(proc):
        for pid in _children(proc.pid):
            os.kill(pid, signal.SIGTERM)

    code, err, done = _interrupt(cmd, mpi_env(), run_dir, term_ranks)
    assert code == 143, err
    lines = [line for line in err.splitlines() if line.startswith("gossip train:")]
    assert lines == [f"gossip train: interrupted by SIGTERM after round {done}: checkpoint of "
                     f"round {done} written in {run_dir}; resume with: mpiexec -n 2 python -m "
                     f"gossip train --resume {run_dir}"], err
    assert "Traceback" not in err and debris(run_dir) == []

    resume = [mpiexec(), "-n", "2", sys.executable, "-m", "gossip", "train", "--resume",
              str(run_dir), "--quiet"]
    holder = RunLock(run_dir)
    proc = run_mpi(2, resume[4:], timeout=120)
    holder.release()
    assert proc.returncode == 2, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "gossip train" in line] == [
        f"gossip train: error: run folder {str(run_dir)!r} is in use by another gossip process "
        f"(pid {os.getpid()}); wait until it ends (two processes in one run folder would mix "
        "their metrics and checkpoints)"]

    def newer():
        return json.loads(manifest.read_text())["round"] > done

    code, err, later = _interrupt(resume, mpi_env(), run_dir,
                                  lambda p: p.send_signal(signal.SIGINT), ready=newer)
    assert code != 0 and "Traceback" not in err and later > done, err
    proc = run_mpi(2, [*resume[4:], "--set", f"rounds={later + 4}"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert debris(run_dir) == []
    _same_as_uninterrupted(tmp_path, run_dir, later + 4, exact=False)


# -- what is kept by default -------------------------------------------------------------------


@pytest.mark.parametrize("every, saved", [(None, [3, 6, 7]), (0, [7]), (2, [2, 4, 6, 7])])
def test_checkpoint_at_every_evaluation_by_default(tmp_path, monkeypatch, every, saved):
    from gossip.runner.experiment import Experiment

    rounds = []
    real = Experiment.checkpoint
    monkeypatch.setattr(Experiment, "checkpoint",
                        lambda self, p: (rounds.append(p.rounds_done), real(self, p)))
    extra = [] if every is None else [f"checkpoint_every={every}"]
    run(load_config(None, [*BASE, "rounds=7", f"out='{tmp_path}'", "name=r", *extra]),
        quiet=True)
    assert rounds == saved


@pytest.mark.parametrize("every", [None, 0])
def test_divergence_message_names_a_checkpoint_that_exists(tmp_path, every):
    from gossip.runner.loop import TrainingDiverged

    extra = [] if every is None else [f"checkpoint_every={every}"]
    with pytest.raises(TrainingDiverged) as info:
        run(load_config(None, [*BASE, "rounds=400", "eval_every=2", "algorithm.lr=5.0",
                               f"out='{tmp_path}'", "name=nan", *extra]), quiet=True)
    message = str(info.value)
    folder = tmp_path / "nan" / "checkpoints"
    if every == 0:
        assert f"no checkpoint was written in {tmp_path / 'nan'}" in message
        assert not folder.exists()
        return
    found = re.search(r"the last checkpoint, of round (\d+), is in (\S+);", message)
    assert found and Path(found[2]) == folder, message
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["round"] == int(found[1])
    assert (folder / f"state-round{found[1]}-rank0.pt").is_file()


def test_stop_signals_first_sets_a_flag_second_stops_at_once(tmp_path):
    """Armed (rounds running): the first signal only sets the flag the loop sums over ranks; a
    second one, or one while not armed, raises RunInterrupted with the line naming the last
    complete checkpoint; the previous handlers come back afterwards."""
    from gossip.runner.interrupt import (
        RunInterrupted,
        StopSignals,
        agreed_signal,
        resume_command,
        stopped_line,
    )

    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        stop.describe = lambda s: stopped_line(s, tmp_path, 6, 1)
        with pytest.raises(RunInterrupted) as early:
            os.kill(os.getpid(), signal.SIGTERM)
        assert early.value.exit_code == 143 and not early.value.agreed
        stop.armed = True
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == signal.SIGINT and stop.flags() == [1.0, 0.0]
        assert agreed_signal([0.0, 0.0]) == 0 and agreed_signal([1.0, 1.0]) == signal.SIGTERM
        with pytest.raises(RunInterrupted) as forced:
            os.kill(os.getpid(), signal.SIGINT)
        assert forced.value.exit_code == 130
        assert forced.value.message == (
            f"interrupted by SIGINT; the last complete checkpoint is of round 6 in {tmp_path}; "
            f"resume with: {resume_command(tmp_path, 1)}")
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_writes_a_summary_that_the_resume_replaces(tmp_path, monkeypatch, sig):
    """A signal during round 2 (0-based): every rank stops after round 3 with its checkpoint
    and summary.json says interrupted at round 3; the resume's summary is the uninterrupted
    run's (same final record, rounds and bytes), interrupted false."""
    from gossip.algorithms.dsgd import DSGD
    from gossip.runner.interrupt import RunInterrupted

    base = [*BASE, f"out='{tmp_path}'", "rounds=7"]
    full = run(load_config(None, [*base, "name=full"]), quiet=True)
    plain = DSGD.round

    def signalled(self, state, t, ctx):
        if t == 2:
            signal.raise_signal(sig)
        return plain(self, state, t, ctx)

    monkeypatch.setattr(DSGD, "round", signalled)
    with pytest.raises(RunInterrupted) as stop:
        run(load_config(None, [*base, "name=cut"]), quiet=True)
    assert stop.value.agreed and stop.value.exit_code == 128 + sig
    cut = tmp_path / "cut"
    summary = json.loads((cut / "summary.json").read_text())
    assert (summary["status"], summary["interrupted"], summary["rounds_done"],
            summary["signal"]) == ("interrupted", True, 3, sig.name)
    assert summary["final"]["round"] == 3
    assert json.loads((cut / "checkpoints" / "manifest.json").read_text())["round"] == 3
    assert debris(cut) == []
    monkeypatch.setattr(DSGD, "round", plain)
    resumed = run(load_config(None, [*base, "name=cut"]), resume=cut, quiet=True)
    stored = json.loads((cut / "summary.json").read_text())
    assert stored["interrupted"] is False and stored["status"] == "finished"
    for key in ("rounds_done", "bytes_sent", "messages"):
        assert stored[key] == resumed[key] == full[key], key
    assert strip_times([stored["final"]]) == strip_times([full["final"]])


def test_interrupt_line_says_when_its_summary_cannot_be_written(tmp_path, monkeypatch):
    """The checkpoint is written; the summary write fails (full disk): the line keeps the
    resume command and adds why there is no summary.json."""
    from gossip.algorithms.dsgd import DSGD
    from gossip.runner import loop
    from gossip.runner.interrupt import RunInterrupted, resume_command

    plain = DSGD.round

    def signalled(self, state, t, ctx):
        if t == 1:
            signal.raise_signal(signal.SIGINT)
        return plain(self, state, t, ctx)

    def full_disk(path, obj):
        raise OutputError(f"cannot write {str(path)!r}: No space left on device (ENOSPC)")

    monkeypatch.setattr(DSGD, "round", signalled)
    monkeypatch.setattr(loop, "write_json", full_disk)
    with pytest.raises(RunInterrupted) as stop:
        run(load_config(None, [*BASE, f"out='{tmp_path}'", "rounds=7", "name=cut"]), quiet=True)
    cut = tmp_path / "cut"
    assert stop.value.message == (
        f"interrupted by SIGINT after round 2: checkpoint of round 2 written in {cut}; resume "
        f"with: {resume_command(cut, 1)}; summary.json was not written (cannot write "
        f"{str(cut / 'summary.json')!r}: No space left on device (ENOSPC))")
    assert not (cut / "summary.json").exists()
    assert json.loads((cut / "checkpoints" / "manifest.json").read_text())["round"] == 2
