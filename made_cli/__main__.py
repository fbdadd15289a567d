"""python -m made_cli: the same as the `made` command."""

from .cli import main

main()
