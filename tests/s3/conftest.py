"""S3 tests run against a real local S3 server (moto's server mode), see moto_s3.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from moto_s3 import s3_bucket, s3_server  # noqa: E402,F401  (fixtures)
