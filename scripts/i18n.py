"""Maintain the message catalogs: `python scripts/i18n.py extract update compile` (see colabkit/catalogs.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's colabkit

from colabkit.catalogs import main  # noqa: E402

sys.exit(main())
