"""``python -m simulators --help``."""

from simulators.cli import main

main()
