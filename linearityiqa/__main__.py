"""python -m linearityiqa: the `linearityiqa` command (cli/console.py)."""

from __future__ import annotations

import sys

from linearityiqa.cli.console import main

sys.exit(main())
