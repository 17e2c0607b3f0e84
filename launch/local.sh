#!/usr/bin/env bash
# Run gossip under mpiexec on this machine with the environment it needs.
#
#   launch/local.sh NPROCS [gossip arguments ...]
#   launch/local.sh 4 train --config configs/dsgd_ring.toml --set nodes=16
#
# - uses the mpiexec and python of the active (or ./.venv) virtual environment, so every rank
#   finds the same interpreter and packages;
# - sets the environment of gossip.runner.launch_env.mpi_env: running as root allowed (containers),
#   oversubscribing the cores allowed (Open MPI 5 and 4 variables), one torch / OpenMP thread
#   per rank (OMP_NUM_THREADS=1, unless set: several threads per rank make rounds 30-40x
#   slower when ranks share cores), the checkout first on PYTHONPATH.
# Extra mpiexec flags go in MPIEXEC_FLAGS, e.g. MPIEXEC_FLAGS="--hostfile launch/hostfile".
set -euo pipefail

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
    echo "usage: launch/local.sh NPROCS [gossip arguments ...]  (NPROCS a positive integer, got '${1:-}')" >&2
    exit 2
fi
nprocs=$1
shift

here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$here/.venv/bin/python" ]; then
    VIRTUAL_ENV="$here/.venv"
fi
python=${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/}python
mpiexec=${MPIEXEC:-$(command -v "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/}mpiexec" || command -v mpiexec || true)}
if [ -z "$mpiexec" ]; then
    echo "launch/local.sh: mpiexec not found; install the MPI extra: pip install -e '.[mpi]'" >&2
    exit 2
fi

# The launch environment has one definition: gossip.runner.launch_env.mpi_env (variables already set
# keep their values).
exports=$("$python" -m gossip.runner.launch_env) || {
    echo "launch/local.sh: $python cannot import gossip; pip install -e '.[mpi]'" >&2
    exit 2
}
eval "$exports"

# shellcheck disable=SC2086
exec "$mpiexec" ${MPIEXEC_FLAGS:-} -n "$nprocs" "$python" -m gossip "$@"
