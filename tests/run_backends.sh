#!/usr/bin/env bash
# The backend tests (tests/backends, marker `backend`) once per Keras backend:
# golden outputs, weight files, channels_first, mixed precision, feature
# models, optimize_for_inference, Grad-CAM, the README classify example and the six
# keras variants against keras.applications (JAX, torch), and two-device
# training (MirroredStrategy in the TensorFlow pass,
# keras.distribution.DataParallel in the JAX pass). On 2 busy cores:
# TensorFlow 115 s, JAX 262 s, torch 150 s one after another (AMD EPYC), plus the first install.
#
#   tests/run_backends.sh                 # tensorflow, jax, torch
#   tests/run_backends.sh jax torch       # some of them
#   tests/run_backends.sh --parallel      # all three pytest processes at once, each
#                                         # log printed when it ends (.ci/run: most of
#                                         # each run is one busy core)
#
# Keras fixes its backend at import, so each backend is its own pytest
# process. JAX and PyTorch (CPU builds) go into a virtual environment of
# their own, which also sees the packages of the active environment (the
# `python` on PATH: a venv, conda or the system Python) through a .pth file
# that runs site.addsitedir on its site-packages. Not `--system-site-packages`:
# a venv made from inside another venv would see the base interpreter's
# packages, not the active venv's (no keras there). Packages installed into
# the backends venv come first, so torch's newer setuptools stays in it and
# never replaces the one the package and its wheel test are built with.
# `pip install torch==2.13.0` takes the local CPU build on these machines;
# never a bare `torch`, which resolves to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3

parallel=false
if [ "${1:-}" = --parallel ]; then
    parallel=true
    shift
fi
backends=("$@")
[ ${#backends[@]} -gt 0 ] || backends=(tensorflow jax torch)
venv=${RESNET_KERAS_BACKENDS_VENV:-${TMPDIR:-/tmp}/resnet_keras_backends_venv}

# Point the backends venv at the active environment's site-packages, again
# on every run (the active environment may have changed since it was made).
link_active_env() {
    local own
    own=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    python - "$own/_resnet_keras_active_env.pth" <<'PY'
import site, sys
lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
with open(sys.argv[1], "w") as pth:
    pth.write("\n".join(lines) + "\n")
PY
}

python_for() {
    if [ "$1" = tensorflow ]; then
        command -v python
        return
    fi
    if [ ! -x "$venv/bin/python" ] || [ "$("$venv/bin/python" -c 'import sys; print(sys.version_info[:2])')" != \
        "$(python -c 'import sys; print(sys.version_info[:2])')" ]; then
        python -m venv --clear "$venv"
    fi
    # A venv made by an older version of this script saw the base interpreter.
    sed -i 's/^include-system-site-packages = true/include-system-site-packages = false/' "$venv/pyvenv.cfg"
    link_active_env
    if ! "$venv/bin/python" -c "import jax, torch" 2>/dev/null; then
        echo "-- installing jax and torch (CPU) into $venv" >&2
        "$venv/bin/pip" install -q "jax[cpu]" "torch==2.13.0" >&2
    fi
    if ! "$venv/bin/python" -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('keras', 'h5py', 'pytest', 'resnet_keras')))"; then
        echo "$venv cannot find keras, h5py, pytest or resnet_keras in the active environment" \
            "($(command -v python)); run pip install -e \".[test]\" there first" >&2
        return 1
    fi
    echo "$venv/bin/python"
}

run_suite() {  # backend python
    echo "== backend tests: $1"
    local t=$SECONDS
    # (keras' variables warn about NumPy 2's copy keyword on JAX and torch)
    # -n 0: one process per backend, as these suites were measured (two-device tests start their own)
    local status=0
    KERAS_BACKEND=$1 "$2" -m pytest -m backend tests/backends -q -p no:cacheprovider -n 0 \
        -W "ignore:__array__ implementation:DeprecationWarning" || status=$?
    echo "-- $1 took $((SECONDS - t)) s"
    return $status
}

pythons=()
for backend in "${backends[@]}"; do
    case "$backend" in
        tensorflow | jax | torch) ;;
        *) echo "unknown backend: $backend (tensorflow, jax or torch)" >&2; exit 2 ;;
    esac
    py=$(python_for "$backend")  # installs first, one at a time: the venv is shared
    pythons+=("$py")
done

if ! $parallel; then
    for i in "${!backends[@]}"; do
        run_suite "${backends[$i]}" "${pythons[$i]}"
    done
    exit 0
fi
logs=$(mktemp -d)
pids=()
for i in "${!backends[@]}"; do
    run_suite "${backends[$i]}" "${pythons[$i]}" > "$logs/$i.log" 2>&1 &
    pids+=($!)
done
failed=()
for i in "${!backends[@]}"; do
    wait "${pids[$i]}" || failed+=("${backends[$i]}")
    cat "$logs/$i.log"
done
rm -rf "$logs"
if [ ${#failed[@]} -gt 0 ]; then
    echo "backend tests failed: ${failed[*]}" >&2
    exit 1
fi
