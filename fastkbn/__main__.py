"""``python -m fastkbn``: the same CLI as the ``fastkbn`` command."""
import sys

from .cli import main

sys.exit(main())
