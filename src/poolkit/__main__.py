"""``python -m poolkit``: the same as the ``poolkit`` command."""

from poolkit.cli import main

if __name__ == "__main__":
    main()
