"""Reference-app contract, checked with the official npm socket.io-client 4.x.

tests/node/contract.mjs runs every check against the running reference app and
prints one JSON line per check; it is run once per transport mode (cached for
the session) and each check becomes one pytest test here.

Needs `npm install --prefix tests/node` (CI does it before pytest) and `node`.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from _harness import TESTS, transport_params

NODE_DIR = TESTS / "node"
SCRIPT = NODE_DIR / "contract.mjs"

# Must match CHECKS in tests/node/contract.mjs (test_check_list_matches_script
# guards against drift).  What each one checks is documented in the script.
CHECKS = [
    "connect",
    "transport",
    "echo_ack_mixed",
    "echo_ack_no_args",
    "echo_no_ack",
    "acks_in_flight",
    "ask_ack",
    "ask_binary",
    "ask_timeout",
    "binary_ack_top_level",
    "binary_ack_nested",
    "binary_event_nested",
    "rooms_join_leave",
    "to_room_includes_sender",
    "bcast_others_only",
    "admin_echo",
    "admin_refused_wrong_token",
    "admin_refused_no_auth",
    "disconnect_me",
    "burst_1000_in_order",
    "payload_under_limit",
    "payload_over_limit",
]

SCRIPT_TIMEOUT = 600  # seconds for one whole run; a hang guard only


def _require_node_client():
    if shutil.which("node") is None:
        pytest.fail(
            "`node` is not on PATH; the socket.io-client contract tests need Node >= 18",
            pytrace=False,
        )
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(
            "tests/node/node_modules is missing: run `npm install --prefix tests/node` "
            "(from the repository root) before pytest",
            pytrace=False,
        )


class NodeRun:
    def __init__(self, transports: str, proc: subprocess.CompletedProcess):
        self.transports = transports
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.results: dict[str, dict] = {}
        self.garbage: list[str] = []
        for line in proc.stdout.splitlines():
            try:
                r = json.loads(line)
                self.results[r["name"]] = r
            except (ValueError, KeyError, TypeError):
                self.garbage.append(line)

    def context(self) -> str:
        return (
            f"node contract.mjs (transports={self.transports}) exit code {self.returncode}\n"
            f"--- stderr ---\n{self.stderr[-8000:]}\n"
            f"--- unparsed stdout ---\n{chr(10).join(self.garbage)[-4000:]}"
        )


@pytest.fixture(scope="session")
def node_runs(_reference_server_session):
    """transports -> NodeRun, each mode run at most once per session."""
    cache: dict[str, NodeRun] = {}

    def get(transports: str) -> NodeRun:
        if transports not in cache:
            _require_node_client()
            _reference_server_session.check_alive()
            try:
                proc = subprocess.run(
                    ["node", str(SCRIPT), _reference_server_session.url, transports],
                    cwd=NODE_DIR,
                    capture_output=True,
                    text=True,
                    timeout=SCRIPT_TIMEOUT,
                )
            except subprocess.TimeoutExpired as e:
                pytest.fail(
                    f"contract.mjs did not finish within {SCRIPT_TIMEOUT} s\n"
                    f"stdout so far:\n{e.stdout}\nstderr:\n{e.stderr}",
                    pytrace=False,
                )
            cache[transports] = NodeRun(transports, proc)
        return cache[transports]

    return get


# the first test of each transport runs the whole script
@pytest.mark.timeout(SCRIPT_TIMEOUT + 60)
@pytest.mark.parametrize("transports", transport_params())
@pytest.mark.parametrize("check", CHECKS)
def test_contract(node_runs, transports, check):
    run = node_runs(transports)
    assert run.returncode == 0, run.context()
    assert check in run.results, f"check {check!r} not reported\n{run.context()}"
    r = run.results[check]
    assert r["ok"], f"{check} failed over {transports}:\n{r.get('error')}"


def test_check_list_matches_script():
    """The list above and the script's CHECKS stay in sync (no silently dropped check)."""
    text = SCRIPT.read_text()
    start = text.index("export const CHECKS = [")
    body = text[start : text.index("];", start)]
    names = [line.strip().strip('",') for line in body.splitlines()[1:] if line.strip()]
    assert names == CHECKS
