#!/usr/bin/env bash
# Runs the README's commands on a fresh Debian 12 inside a chroot, so that a missing install step
# fails here instead of hiding behind packages this machine happens to have.
#
#   sudo scripts/check_fresh.sh [--quick|--full] [--keep]
#
# 1. Builds a `debootstrap --variant=minbase bookworm` root once and caches it as a tarball under
#    ~/.cache/lowbit-fresh (delete it to rebuild); every run unpacks a clean copy of it.
# 2. Copies `git archive HEAD` (committed files only: uncommitted changes are not tested) into it.
# 3. Binds /proc, /sys and /dev, and the CUDA toolkit read-only when this machine has one (the
#    image provides CUDA; no Debian package does), then runs as root inside the root:
#      --quick (default): scripts/install_deps.sh, configure + build Release, ctest -L unit;
#      --full:            bash scripts/demo.sh, then bash scripts/test.sh (the README verbatim).
# Prints each stage's wall time. The unpacked root is removed afterwards unless --keep.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=quick keep=0
for a in "$@"; do
  case "$a" in
    --quick) mode=quick ;;
    --full) mode=full ;;
    --keep) keep=1 ;;
    *) echo "check_fresh.sh: unknown argument '$a' (use --quick, --full, --keep)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "check_fresh.sh: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
git rev-parse --verify -q HEAD > /dev/null || { echo "check_fresh.sh: not in a git checkout with a commit" >&2; exit 2; }
command -v debootstrap > /dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }

cache="${LOWBIT_FRESH_CACHE:-$HOME/.cache/lowbit-fresh}"
mirror="${LOWBIT_FRESH_MIRROR:-http://deb.debian.org/debian}"
base="$cache/bookworm-minbase.tar"
root="$cache/root.$$"
mkdir -p "$cache"
t0=$(date +%s)
stamp() { echo "check_fresh: $1 after $(( $(date +%s) - t0 )) s"; }

if [ ! -f "$base" ]; then
  echo "check_fresh: debootstrap --variant=minbase bookworm (cached in $base)"
  tmp="$cache/debootstrap.$$"
  debootstrap --variant=minbase bookworm "$tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
    { echo "check_fresh: debootstrap failed, see $cache/debootstrap.log" >&2; rm -rf "$tmp"; exit 1; }
  tar -C "$tmp" -cf "$base.part" . && mv "$base.part" "$base"
  rm -rf "$tmp"
  stamp "root built"
fi

mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2> /dev/null || true; done
  if [ "$keep" -eq 0 ]; then rm -rf "$root"; else echo "check_fresh: root kept at $root"; fi
}
trap cleanup EXIT
mkdir -p "$root"
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounts+=("$2")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
bind /sys "$root/sys"
bind /dev "$root/dev"
bind /dev/pts "$root/dev/pts"
cuda_path=""
if [ -d /usr/local/cuda ]; then
  real=$(readlink -f /usr/local/cuda)
  bind "$real" "$root$real" ro
  [ "$real" != /usr/local/cuda ] && ln -sfn "$real" "$root/usr/local/cuda"
  cuda_path="/usr/local/cuda/bin:"
  echo "check_fresh: CUDA toolkit $real bound read-only (the image's, not a Debian package)"
fi

mkdir -p "$root/src/lowbit"
git archive HEAD | tar -C "$root/src/lowbit" -x
echo "check_fresh: $(git rev-parse --short HEAD) copied to /src/lowbit; mode $mode"

if [ "$mode" = quick ]; then
  inner='bash scripts/install_deps.sh && s=$(date +%s) &&
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release &&
cmake --build build/release -j"$(nproc)" && echo "check_fresh: build took $(( $(date +%s) - s )) s" &&
ctest --test-dir build/release -L unit -j"$(nproc)" --output-on-failure'
else
  inner='s=$(date +%s) && bash scripts/demo.sh && echo "check_fresh: demo.sh took $(( $(date +%s) - s )) s" &&
s=$(date +%s) && bash scripts/test.sh && echo "check_fresh: test.sh took $(( $(date +%s) - s )) s"'
fi
status=0
chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
  PATH="${cuda_path}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  /bin/bash -c "cd /src/lowbit && $inner" || status=$?
stamp "$mode mode finished with status $status"
exit "$status"
