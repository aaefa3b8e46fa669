"""``python -m notifyq``: the command-line interface (see ``notifyq.cli``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
