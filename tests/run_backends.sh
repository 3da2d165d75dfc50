#!/usr/bin/env bash
# The backend tests (tests/backends, marker `backend`) once per Keras backend:
# golden outputs, weight files, channels_first, mixed precision, feature
# models, optimize_for_inference, the README classify example (JAX, torch),
# and two-device training (MirroredStrategy in the TensorFlow pass,
# keras.distribution.DataParallel in the JAX pass). About 7 min on 2 cores.
#
#   tests/run_backends.sh                 # tensorflow, jax, torch
#   tests/run_backends.sh jax torch       # some of them
#
# Keras fixes its backend at import, so each backend is its own pytest
# process. JAX and PyTorch (CPU builds) go into a virtual environment that
# sees the installed packages (--system-site-packages): torch brings a newer
# setuptools, which must not replace the one the package and its wheel test
# are built with. `pip install torch==2.13.0` takes the local CPU build on
# these machines; never a bare `torch`, which resolves to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3

backends=("$@")
[ ${#backends[@]} -gt 0 ] || backends=(tensorflow jax torch)
venv=${RESNET_KERAS_BACKENDS_VENV:-${TMPDIR:-/tmp}/resnet_keras_backends_venv}

python_for() {
    if [ "$1" = tensorflow ]; then
        command -v python
        return
    fi
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import jax, torch" 2>/dev/null; then
        echo "-- installing jax and torch (CPU) into $venv" >&2
        python -m venv --system-site-packages "$venv"
        "$venv/bin/pip" install -q "jax[cpu]" "torch==2.13.0" >&2
    fi
    echo "$venv/bin/python"
}

for backend in "${backends[@]}"; do
    case "$backend" in
        tensorflow | jax | torch) ;;
        *) echo "unknown backend: $backend (tensorflow, jax or torch)" >&2; exit 2 ;;
    esac
    py=$(python_for "$backend")
    echo "== backend tests: $backend"
    t=$SECONDS
    # (keras' variables warn about NumPy 2's copy keyword on JAX and torch)
    KERAS_BACKEND=$backend "$py" -m pytest -m backend tests/backends -q -p no:cacheprovider \
        -W "ignore:__array__ implementation:DeprecationWarning"
    echo "-- $backend took $((SECONDS - t)) s"
done
