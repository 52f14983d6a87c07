"""`python -m multiarch_mirror` is the same as the `multiarch-mirror` command."""

from multiarch_mirror.cli import main

if __name__ == "__main__":
    main()
