"""The demo stops on SIGTERM as on Ctrl-C, and a second SIGTERM while it stops does not interrupt the stopping."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, signal, time
from stadsdata import demo
signal.signal(signal.SIGTERM, demo._interrupt)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
except KeyboardInterrupt:
    os.kill(os.getpid(), signal.SIGTERM)  # sent again while stopping
    time.sleep(0.2)
    print("stopped")
"""


def test_a_second_sigterm_while_stopping_is_ignored() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
    assert "Traceback" not in done.stderr
