#!/usr/bin/env bash
# Builds (or reuses) the development environment and links it as .venv in this checkout.
# The environment is ~6 GB, so it lives in a cache outside the clone, keyed by the hash of
# constraints.txt (the torch pins decide almost all of its size). The same install step
# runs again whenever pyproject.toml's requirements change, so a new dependency is picked up
# without rebuilding torch.
# With an NVIDIA driver (or MSPN_GPU=1; MSPN_GPU=0 forces the CPU set) the environment gets the
# gpu extra (onnxruntime-gpu, TensorRT, cuda-python) instead of the CPU onnxruntime: the two
# onnxruntime packages share one import folder, and installed together the CPU one hides the
# CUDA execution provider.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
key=$(sha256sum constraints.txt | cut -c1-16)
cache_root=${MSPN_ENV_CACHE:-$HOME/.cache/mspn-envs}
env_dir="$cache_root/venv-$key"
mkdir -p "$cache_root"
if [ ! -x "$env_dir/bin/python" ]; then
    echo "building environment $env_dir (constraints.txt hash $key)"
    "$PYTHON" -m venv "$env_dir"
    "$env_dir/bin/pip" install --quiet --upgrade pip setuptools wheel
    # Keep the two newest environments; older keys are dead weight on the disk.
    ls -1dt "$cache_root"/venv-* | tail -n +3 | xargs -r rm -rf
fi
if [ -e .venv ] && [ ! -L .venv ]; then
    echo "error: .venv exists and is not the cached environment link; remove it" >&2
    exit 1
fi
ln -sfn "$env_dir" .venv
has_nvidia_driver() {
    case "${MSPN_GPU:-auto}" in
        1) return 0 ;;
        0) return 1 ;;
    esac
    [ -e /proc/driver/nvidia/version ] || nvidia-smi >/dev/null 2>&1
}
if has_nvidia_driver; then
    extras="train,export-core,openvino,dev,gpu" ort=onnxruntime-gpu other=onnxruntime
else
    extras="all,dev" ort=onnxruntime other=onnxruntime-gpu
fi
reqs=$( (cat constraints.txt pyproject.toml; echo "$extras") | sha256sum | cut -c1-16)
if [ "$(cat "$env_dir/.requirements" 2>/dev/null)" != "$reqs" ]; then
    # Switching between the CPU and GPU sets: remove both onnxruntime packages, since removing
    # one deletes files of the other; the install below brings back the right one.
    if "$env_dir/bin/pip" show --quiet "$other" >/dev/null 2>&1; then
        "$env_dir/bin/pip" uninstall --yes --quiet "$other" "$ort" || true
    fi
    "$env_dir/bin/pip" install --progress-bar off -c constraints.txt -e ".[$extras]"
    # The serve extra (tests/serve): the nvidia-pytriton wheel declares numpy<2, which would
    # downgrade numpy under OpenCV and torch; mspn serve runs with numpy 2 (DLPack), so install the
    # wheel without its pins and its other requirements explicitly.
    "$env_dir/bin/pip" install --progress-bar off -c constraints.txt "tritonclient[http,grpc]>=2.50,<3" \
        grpcio pyzmq sh typer typing_inspect wrapt importlib_metadata
    "$env_dir/bin/pip" install --progress-bar off --no-deps "nvidia-pytriton>=0.7,<1"
    echo "$reqs" > "$env_dir/.requirements"
fi
# The cached environment is shared between checkouts: point the editable install at this one.
here=$(pwd -P)
installed=$(cd /tmp && "$env_dir/bin/python" -c 'import mspn, os; print(os.path.dirname(os.path.dirname(os.path.realpath(mspn.__file__))))' 2>/dev/null || true)
if [ "$installed" != "$here" ]; then
    "$env_dir/bin/pip" install --quiet --no-deps --no-build-isolation -e .
fi
