"""``python -m rapid_dev_storage``: the command-line tool."""

from .cli import main

main()
