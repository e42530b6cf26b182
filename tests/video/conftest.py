"""Fixtures for the video I/O tests; the helpers that make test videos with PyAV live in videokit.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
