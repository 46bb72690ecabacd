#!/usr/bin/env python3
"""ferrosio demo: the chat room of examples/chat, with its page, on one port.

    npm install --prefix tests/node        # once: the official browser client bundle
    python examples/demo.py --port 5000    # then open http://127.0.0.1:5000/

Same options as examples/chat/server.py (``--host``, ``--client-dist``, ``--log-level``).
"""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parent / "chat" / "server.py"), run_name="__main__")
