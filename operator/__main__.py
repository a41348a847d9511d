"""``python -m metallb.operator`` runs the ``metallb`` command."""

import sys

from metallb.operator.cli import main

sys.exit(main())
