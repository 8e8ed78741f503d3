"""``python -m lab``: the lab from the command line (see ``python -m lab --help``)."""

from lab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
