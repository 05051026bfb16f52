#!/usr/bin/env bash
# Create the peers' own virtual environments, apart from the project's (../shared/STACK.md):
#   bench/peers/.venvs/recbole   RecBole 1.2.1, CPU torch 2.13.0, numpy < 2, faiss-cpu (NCL's
#                                k-means). RecBole-GNN is not on the package index: SimGCL and
#                                XSimGCL come from bench/peers/recbole_gcl.py instead
#   bench/peers/.venvs/lightfm   LightFM 1.17 built from its sdist with the Python 3.11 fix
# Idempotent: an environment that already imports its package is left alone.
#   bash bench/peers/setup_envs.sh [recbole|lightfm|all]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venvs="$here/.venvs"
which="${1:-all}"
mkdir -p "$venvs"

setup_recbole() {
  local env="$venvs/recbole"
  if [ -x "$env/bin/python" ] && "$env/bin/python" -c "import recbole, faiss, scipy.sparse as s; s.dok_matrix._update" 2>/dev/null; then
    echo "recbole: ready ($env)"; return
  fi
  python3 -m venv "$env"
  "$env/bin/pip" install -q "setuptools<81" wheel
  # scipy < 1.12: RecBole's graph models build their adjacency with dok_matrix._update
  "$env/bin/pip" install -q "torch==2.13.0" "numpy<2" "pandas<3" "scipy<1.12" \
    "recbole==1.2.1" "faiss-cpu<1.10" "thop" "tensorboard" "colorlog" "colorama"
  "$env/bin/python" -c "import recbole; print('recbole', recbole.__version__)"
}

setup_lightfm() {
  local env="$venvs/lightfm"
  if [ -x "$env/bin/python" ] && "$env/bin/python" -c "import lightfm" 2>/dev/null; then
    echo "lightfm: ready ($env)"; return
  fi
  python3 -m venv "$env"
  "$env/bin/pip" install -q "setuptools<81" wheel "numpy<2" "scipy<1.15" cython
  local work
  work="$(mktemp -d)"
  "$env/bin/pip" download -q --no-deps --no-binary :all: "lightfm==1.17" -d "$work"
  tar -xzf "$work"/lightfm-1.17.tar.gz -C "$work"
  # LightFM 1.17's setup.py sets a flag on __builtins__, which is a dict under Python 3.11
  sed -i 's/__builtins__.__LIGHTFM_SETUP__ = True/import builtins; builtins.__LIGHTFM_SETUP__ = True/' \
    "$work/lightfm-1.17/setup.py"
  "$env/bin/pip" install -q --no-build-isolation "$work/lightfm-1.17"
  rm -rf "$work"
  "$env/bin/python" -c "import lightfm; print('lightfm', lightfm.__version__)"
}

case "$which" in
  recbole) setup_recbole ;;
  lightfm) setup_lightfm ;;
  all) setup_recbole; setup_lightfm ;;
  *) echo "usage: $0 [recbole|lightfm|all]" >&2; exit 2 ;;
esac
