# Shared by scripts/run and scripts/test: find Python 3.11+, create .venv, install SayIt.
# Sourced, not executed. Usage: sayit_setup "<extras>" (e.g. "desktop" or "desktop,test").

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "SayIt needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

sayit_setup() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating $VENV"
        "$(find_python)" -m venv "$VENV"
    fi
    # Reinstall only when the project's dependencies or the extras changed.
    local stamp="$VENV/.sayit-installed"
    local want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_setup.sh" | sha256sum | cut -d' ' -f1) $extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "==> installing SayIt [$extras] into $VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$extras]"
        sayit_install_mlx "$extras"
        echo "$want" > "$stamp"
    fi
}

# MLX: macOS arm64 gets it from the `mlx` extra. On Linux the tests run MLX on the CPU:
# `mlx[cpu]` (plain `mlx` lacks libmlx.so) and mlx-whisper without its unused CUDA torch.
sayit_install_mlx() {
    case "$1" in *test*) ;; *) return 0 ;; esac
    [ "$(uname -s)" = "Linux" ] || return 0
    "$VENV/bin/python" -m pip install --quiet "mlx[cpu]"
    "$VENV/bin/python" -m pip install --quiet --no-deps mlx-whisper
    "$VENV/bin/python" -m pip install --quiet numba scipy tqdm more-itertools tiktoken
}
