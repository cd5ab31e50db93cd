#!/usr/bin/env bash
# MrFlow for Krita: one-step install on Linux and macOS.
#
#   installer/install.sh [--torch cuda|rocm|cpu|mps] [--venv DIR] [--source SPEC]
#                        [--krita-dir DIR] [--autostart|--no-autostart] [--dry-run]
#
# 1. creates a Python virtual environment (default: ~/.local/share/mrflow/venv, or
#    ~/Library/Application Support/mrflow/venv on macOS),
# 2. installs the PyTorch build for this machine: CUDA when `nvidia-smi` sees a GPU, ROCm when
#    `rocminfo` does, Apple MPS on Apple-silicon Macs, otherwise CPU (override with --torch or
#    MRFLOW_TORCH; MRFLOW_TORCH_INDEX overrides the package index URL),
# 3. installs MrFlow into it (from this checkout, or --source: a path, wheel or "mrflow"),
# 4. runs `mrflow install`, which puts the plugin into Krita.
# --dry-run prints each step's command and runs none of them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
torch_kind="${MRFLOW_TORCH:-}"
venv=""
source_spec=""
dry_run=0
mrflow_install_args=()

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --torch) [ $# -ge 2 ] || die "--torch needs a value: cuda, rocm, cpu or mps"; torch_kind="$2"; shift 2 ;;
        --torch=*) torch_kind="${1#*=}"; shift ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a folder"; venv="$2"; shift 2 ;;
        --source) [ $# -ge 2 ] || die "--source needs a path or package name"; source_spec="$2"; shift 2 ;;
        --krita-dir) [ $# -ge 2 ] || die "--krita-dir needs a folder"; mrflow_install_args+=(--krita-dir "$2"); shift 2 ;;
        --autostart|--no-autostart) mrflow_install_args+=("$1"); shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

os="$(uname -s)"
arch="$(uname -m)"

# --- which PyTorch ---------------------------------------------------------------------------
detect_torch() {
    if [ "$os" = "Darwin" ]; then
        if [ "$arch" = "arm64" ]; then echo mps; else echo cpu; fi
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo cuda
    elif command -v rocminfo >/dev/null 2>&1 && rocminfo 2>/dev/null | grep -q 'gfx'; then
        echo rocm
    else
        echo cpu
    fi
}

# The newest CUDA build the installed driver can run (nvidia-smi reports the driver's maximum).
cuda_index() {
    local version major minor
    version="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\.[0-9]*\).*/\1/p' | head -n1)"
    major="${version%%.*}"; minor="${version#*.}"
    if [ -z "$version" ]; then echo cu128
    elif [ "$major" -gt 12 ] || { [ "$major" -eq 12 ] && [ "$minor" -ge 8 ]; }; then echo cu128
    elif [ "$major" -eq 12 ] && [ "$minor" -ge 6 ]; then echo cu126
    else echo cu118
    fi
}

[ -n "$torch_kind" ] || torch_kind="$(detect_torch)"
case "$torch_kind" in
    cuda) index_url="https://download.pytorch.org/whl/$(cuda_index)" ;;
    rocm) index_url="https://download.pytorch.org/whl/rocm6.4" ;;
    cpu)
        # macOS wheels on PyPI are CPU/MPS builds already; elsewhere the CPU index avoids CUDA.
        if [ "$os" = "Darwin" ]; then index_url=""; else index_url="https://download.pytorch.org/whl/cpu"; fi ;;
    mps)
        [ "$os" = "Darwin" ] || die "--torch mps is for Apple-silicon Macs; use cuda, rocm or cpu here"
        index_url="" ;;
    *) die "unknown PyTorch kind '$torch_kind': use cuda, rocm, cpu or mps" ;;
esac
index_url="${MRFLOW_TORCH_INDEX:-$index_url}"

# --- where --------------------------------------------------------------------------------------
if [ -z "$venv" ]; then
    if [ "$os" = "Darwin" ]; then venv="$HOME/Library/Application Support/mrflow/venv"
    else venv="${XDG_DATA_HOME:-$HOME/.local/share}/mrflow/venv"; fi
fi
if [ -z "$source_spec" ]; then
    if [ -f "$here/../pyproject.toml" ]; then source_spec="$(cd "$here/.." && pwd)"; else source_spec="mrflow"; fi
fi

python=""
for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        python="$(command -v "$candidate")"; break
    fi
done
[ -n "$python" ] || die "MrFlow needs Python 3.10 or newer; install it (python.org or your package manager) and run this again"

# --- do it --------------------------------------------------------------------------------------
# (Arrays are expanded as ${a[@]+"${a[@]}"}: macOS's bash 3.2 calls an empty array unbound.)
step() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    [ "$dry_run" -eq 1 ] || "$@"
}

echo "MrFlow installer: PyTorch for $torch_kind${index_url:+ from $index_url}, into $venv"
torch_index_args=()
[ -z "$index_url" ] || torch_index_args=(--index-url "$index_url")
extras="tray"
step "$python" -m venv "$venv"
step "$venv/bin/python" -m pip install --upgrade pip
step "$venv/bin/python" -m pip install torch torchvision ${torch_index_args[@]+"${torch_index_args[@]}"}
step "$venv/bin/python" -m pip install --upgrade "$source_spec[$extras]"  # a re-run upgrades MrFlow
step "$venv/bin/mrflow" install ${mrflow_install_args[@]+"${mrflow_install_args[@]}"}
if [ "$dry_run" -eq 1 ]; then
    echo "(dry run: nothing was changed)"
else
    echo "Next: \`$venv/bin/mrflow models pull\` downloads the default model (FLUX.1-schnell, about 34 GB)."
fi
