#!/usr/bin/env bash
# Register QEMU user-mode emulators with binfmt_misc (what `doctor --setup-qemu` does).
set -euo pipefail
dir=/proc/sys/fs/binfmt_misc
[ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir"
for conf in /usr/lib/binfmt.d/qemu-aarch64.conf /usr/lib/binfmt.d/qemu-x86_64.conf; do
  [ -f "$conf" ] || continue
  name=$(cut -d: -f2 "$conf")
  [ -e "$dir/$name" ] || cat "$conf" > "$dir/register"
done
