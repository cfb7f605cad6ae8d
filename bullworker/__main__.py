"""``python -m bullworker`` runs the CLI."""

from bullworker.cli import main

main()
