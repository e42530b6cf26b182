"""edvr_fast: EDVR video restoration (deblurring, super-resolution), fast and easy on your own data.

Importing the package loads the operator registry only; data modules (lmdb, OpenCV) load on demand.
"""

from __future__ import annotations

__version__ = "0.1.0"

# ops registers torch.ops.edvr_fast.*, so saved exported programs (.pt2) load after `import edvr_fast`.
from edvr_fast import errors, ops  # noqa: F401

__all__ = ["__version__", "errors"]
