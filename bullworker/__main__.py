"""``python -m bullworker`` runs the CLI."""

from .cli import main

main()
