"""``python -m curate`` runs the CLI."""

from .cli import main

main()
