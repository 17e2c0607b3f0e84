"""``gossip train`` with one rank killed (SIGKILL) while it writes a checkpoint.

Usage: ``GOSSIP_TEST_DIE=RANK:ROUND mpiexec -n P python tests/run_scripts/kill_rank.py ARGS``
(ARGS as for ``gossip train``). Rank RANK, about to write its checkpoint of round ROUND,
waits until every other rank's file of that round exists, writes half of its temporary file
and kills itself: the state of a crash in which the per-rank files disagree (the others at
ROUND, this one at the checkpoint before) and a temporary file is left behind. The variable is
read by this script only; the simulator has no such setting.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from gossip.cli.train import main
from gossip.runner import checkpoint
from gossip.runner.atomic import temp_path


def dying_write(rank: int, round_: int):
    write = checkpoint._write_file

    def dying(path, payload):
        if (payload["rank"], payload["rounds_done"]) != (rank, round_):
            return write(path, payload)
        others = [checkpoint.checkpoint_path(path.parent.parent, k, round_)
                  for k in range(payload["world_size"]) if k != rank]
        deadline = time.monotonic() + 60
        while not all(p.is_file() for p in others) and time.monotonic() < deadline:
            time.sleep(0.01)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temp_path(path), "wb") as f:
            f.write(b"\x50\x4b\x03\x04 half a checkpoint")
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    return dying


if __name__ == "__main__":
    die_rank, die_round = map(int, os.environ["GOSSIP_TEST_DIE"].split(":"))
    checkpoint._write_file = dying_write(die_rank, die_round)
    sys.exit(main(sys.argv[1:]))
