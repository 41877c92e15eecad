"""`python -m lessons` is the same as the `learn` command."""

from lessons.cli import main

main()
