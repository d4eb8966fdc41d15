# Shared build settings for scripts/demo.sh and scripts/test.sh (sourced, not run).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="$PWD"   # cache hits across clones in different folders
export CCACHE_NOHASHDIR=true
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
JOBS="${JOBS:-$(nproc)}"
