"""multiarch-mirror: multi-arch container images of apps whose vendors ship none for ARM64."""

__version__ = "0.1.0"
