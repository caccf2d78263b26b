# Shared helpers of tools/targets.sh (sourced): result lines, cached debootstrapped roots, chroot mounts,
# the device-style install. Expects REPO, CACHE, LOG, PY, MIRROR, FAILED and MOUNTS from the caller.

result() {   # result PASS|FAIL|SKIP check detail...
  local st=$1 name=$2; shift 2
  printf '%-4s %-26s %s\n' "$st" "$name" "$*"
  [ "$st" = FAIL ] && FAILED=1
  return 0
}

cleanup() {
  local i
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  MOUNTS=()
}
trap cleanup EXIT

need_root() {
  if [ "$(id -u)" != 0 ]; then result SKIP "$1" "needs root (debootstrap, chroot, binfmt_misc)"; return 1; fi
}

binfmt_on() {   # qemu-user for foreign binaries inside the chroot
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || return 1
  fi
  update-binfmts --enable >/dev/null 2>&1 || true
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null
}

ensure_root() {   # ensure_root ARCH SUITE PACKAGES -> path of a complete root (debootstrapped once, then cached)
  local arch=$1 suite=$2 pkgs=$3 root="$CACHE/$1-$2"
  if [ -f "$root/.complete" ]; then echo "$root"; return 0; fi
  rm -rf "$root.tmp"
  if ! nice -n 10 debootstrap --arch="$arch" --variant=minbase --include="$pkgs" "$suite" "$root.tmp" "$MIRROR" \
      > "$LOG/debootstrap-$arch-$suite.log" 2>&1; then
    echo "debootstrap failed: $(tail -n 2 "$LOG/debootstrap-$arch-$suite.log" | tr '\n' ' ')" >&2
    return 1
  fi
  rm -rf "$root" && mv "$root.tmp" "$root" && touch "$root/.complete" && echo "$root"
}

chroot_mounts() {   # /proc and /dev for pip and Python; NOT /sys (see docs/hardware.md: qemu-user + host /sys)
  local root=$1
  mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc" && MOUNTS+=("$root/proc"); }
  mountpoint -q "$root/dev" || { mount --bind /dev "$root/dev" && MOUNTS+=("$root/dev"); }
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
}

copy_source() {   # what a fresh clone has (HEAD); ECG_TARGETS_SOURCE=worktree adds uncommitted files
  local dest=$1
  rm -rf "$dest" && mkdir -p "$dest"
  if [ "${ECG_TARGETS_SOURCE:-head}" = worktree ]; then
    git ls-files -z --cached --others --exclude-standard | grep -zv '^\.venv/' \
      | tar --null -T - -c 2>/dev/null | tar -x -C "$dest"
  else
    git archive HEAD | tar -x -C "$dest"
  fi
}

device_install() {   # device_install ROOT: venv with the device requirements (cached) + `pip install .`
  local root=$1 venv=/opt/ecg-edge/venv
  "$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -v ' @ ' > "$root/opt/ecg-edge-constraints.txt"
  copy_source "$root/opt/ecg-edge/src"
  if [ ! -x "$root$venv/bin/pip" ]; then            # kept between runs: pip below only changes what differs
    chroot "$root" /usr/bin/python3 -m venv "$venv" || return 1
  fi
  # the same versions as the x86 reference run, so a difference is the architecture's, not a release's
  # (--no-compile: bytecode is compiled on first import instead; under emulation that halves the install)
  chroot "$root" sh -c "cd /opt/ecg-edge/src && PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= \
      $venv/bin/pip install --progress-bar off --no-compile -c /opt/ecg-edge-constraints.txt ." \
      > "$LOG/pip-$(basename "$root").log" 2>&1 || return 1
}

