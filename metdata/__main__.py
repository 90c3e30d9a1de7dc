"""``python -m metdata`` runs the command line."""

from metdata.cli import main

main()
