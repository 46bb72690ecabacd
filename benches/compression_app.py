#!/usr/bin/env python3
"""The reference app (examples/reference_app.py) with compression settings, for
benches/compression.py.

    python benches/compression_app.py --port 3000 [--per-message-deflate] [--threshold 1024]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ferrosio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import reference_app


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--per-message-deflate", action="store_true")
    p.add_argument("--threshold", type=int, default=1024)
    a = p.parse_args()
    sio = reference_app.sio
    # Read when the server starts: the reference app's server, with compression switched.
    sio.per_message_deflate = a.per_message_deflate
    sio.compression_threshold = a.threshold
    ferrosio.run(sio, host=a.host, port=a.port)


if __name__ == "__main__":
    main()
