"""``python -m edgelearn ...`` (what ``torchrun -m edgelearn train ...`` runs): the command line."""
import sys

from .cli import main

sys.exit(main())
