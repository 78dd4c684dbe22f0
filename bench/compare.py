"""Run the side-by-side comparison: ``python bench/compare.py [options]``.

The same as ``fastkbn bench [options]``; see ``fastkbn bench --help`` and bench/README.md.
"""
import sys

from fastkbn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
