#!/usr/bin/env bash
# Idempotent local setup: creates ./.venv (repo root) and installs
# infra/local/requirements.txt into it, only when that file changed since the
# last successful install. Safe to run from any directory, any number of times.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
REQS="$ROOT/infra/local/requirements.txt"
STAMP="$VENV/.ariane-requirements.sha256"
PYTHON="${PYTHON:-python3}"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [[ ! -f "$REQS" ]]; then
  log "missing $REQS"
  exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv in .venv ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv "$VENV"
  rm -f "$STAMP"
fi

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"

if [[ "$want" == "$have" ]]; then
  log ".venv is up to date with infra/local/requirements.txt"
  exit 0
fi

# Requirements marked `# own venv` pin dependencies that clash with the others (checkov
# pins its own boto3): each gets a virtualenv of its own under .venv/tools/<name>, and
# its command is linked into .venv/bin. Everything else goes into .venv itself.
MAIN_REQS="$(mktemp)"
trap 'rm -f "$MAIN_REQS"' EXIT
grep -Ev '^[^#]+# own venv' "$REQS" > "$MAIN_REQS"
mapfile -t OWN_VENV < <(grep -E '^[^#]+# own venv' "$REQS" | sed 's/#.*//; s/[[:space:]]//g' | grep -v '^$' || true)

# Quiet, but with progress: one line per package pip resolves, then a summary.
# (pip's errors go to stderr and are shown as-is; pipefail keeps its exit code.)
pip_install() {
  local python="$1"; shift
  "$python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$python" -m pip install --disable-pip-version-check --progress-bar off "$@" \
    | awk '/^Collecting /{printf "[bootstrap]   %s\n", $2; fflush()} /^Successfully installed/{print "[bootstrap] installed " NF-2 " packages"; fflush()}' >&2
}

log "installing infra/local/requirements.txt into .venv (this can take a minute)"
pip_install "$VENV/bin/python" -r "$MAIN_REQS"
for req in "${OWN_VENV[@]}"; do
  name="${req%%[=<>~!]*}"
  tool="$VENV/tools/$name"
  log "installing $req into .venv/tools/$name (its own virtualenv)"
  [[ -x "$tool/bin/python" ]] || "$PYTHON" -m venv "$tool"
  pip_install "$tool/bin/python" "$req"
  ln -sf "$tool/bin/$name" "$VENV/bin/$name"
done
printf '%s\n' "$want" > "$STAMP"
log "done: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("moto","boto3","aws-sam-translator","cfn-lint","cargo-lambda","duckdb")))')"
for req in "${OWN_VENV[@]}"; do
  name="${req%%[=<>~!]*}"
  log "  $name $("$VENV/tools/$name/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))") (.venv/bin/$name)"
done
