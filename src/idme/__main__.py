"""``python -m idme``: the same as the ``idme`` command."""

from idme.cli import main

if __name__ == "__main__":
    main()
