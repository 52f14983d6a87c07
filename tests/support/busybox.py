"""Debian's `busybox-static` for amd64 and arm64: real per-arch binaries for fixture images."""

from multiarch_mirror.demo.binaries import busybox_binaries

__all__ = ["busybox_binaries"]
