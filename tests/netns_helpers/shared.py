"""What the namespace helper scripts share. They run as scripts, so they import this as `shared`
(their own folder is first on sys.path)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def emit(**fields) -> None:
    """One JSON line on stdout, stamped with the time, for the test reading this process."""
    fields.setdefault("t", time.time())
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def wait_for(predicate, timeout: float) -> float | None:
    """Seconds until `predicate()` held, or None if it did not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def job_completes_on(other_url: str, submit_url: str, speech: Path, text: str, timeout: float = 60) -> str | None:
    """Upload espeak-ng speech of `text` to the node at `submit_url`; "completed" once the node at
    `other_url` (another node of the same cluster) reports the job completed, else None."""
    import httpx

    subprocess.run(["espeak-ng", "-w", str(speech), text], check=True)
    with speech.open("rb") as fh:
        job_id = httpx.post(submit_url + "/api/transcribe", files={"audio": fh},
                            data={"async": "true"}, timeout=60).json()["jobId"]
    done = wait_for(lambda: httpx.get(f"{other_url}/api/jobs/{job_id}").json().get("status") == "completed",
                    timeout)
    return None if done is None else "completed"
