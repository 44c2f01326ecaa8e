"""``python -m idme.cli``: the same as the ``idme`` command."""

from idme.cli import main

main()
