"""Names this checkout gives what it keeps in shared local services.

Two checkouts on one machine share PostgreSQL, Redis and the S3 server, so each derives
its own development and test database names from its path; everything it keeps in Redis
is then namespaced by the database name (``ARTCRITIC_INSTANCE`` in settings), and
``make run`` records its own ports under ``.run/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_ID = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
DEV_DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/artcritic_{CHECKOUT_ID}"
TEST_DATABASE_NAME = f"test_artcritic_{CHECKOUT_ID}"
