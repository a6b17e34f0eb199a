"""`python -m portal` is the `footfall` command."""
from portal.cli import main

main()
