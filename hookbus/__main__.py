"""`python -m hookbus`: the CLI."""

from hookbus.cli import main

main()
