"""`python -m consumer` is the same as the `cxone-role-sync` command."""

from consumer.cli import main

main()
