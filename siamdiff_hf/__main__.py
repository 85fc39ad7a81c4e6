"""`python -m siamdiff_hf ...` (and `accelerate launch -m siamdiff_hf ...`) runs the CLI."""

import sys

from siamdiff_hf.cli import main

sys.exit(main())
