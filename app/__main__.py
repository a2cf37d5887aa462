"""`python -m app serve | init-db | clear-db`: the original's manager.py commands."""

from app.cli import main

main()
