"""Run `resolve_model` in a fresh interpreter, so huggingface_hub reads HF_ENDPOINT/HF_HUB_OFFLINE
from this process's environment when it is first imported.

Usage: python -m tests.fakehub.resolve_child '{"name": ..., "cache": ..., "hide": [...], "download": true}'
Prints one JSON line on stdout: {"path": ...} or {"error": <class name>, "message": ...}.
`hide` lists modules to make unimportable (a model wheel that is "not installed").
Logs go to stderr at INFO (that is where download progress shows).
"""

from __future__ import annotations

import json
import logging
import sys
import time


def main() -> None:
    args = json.loads(sys.argv[1])
    for module in args.get("hide", []):
        sys.modules[module] = None  # type: ignore[assignment]  # import raises ImportError
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from sayit_node.engines.base import ModelNotAvailable
    from sayit_node.engines.models import resolve_model

    started = time.monotonic()
    try:
        if args.get("kind") == "speaker":
            from sayit_node.diarize.models import resolve_speaker_model

            path = resolve_speaker_model(args["name"], args["cache"])
        else:
            path = resolve_model(args["name"], args["cache"], download=args.get("download", True))
        result = {"path": str(path)}
    except ModelNotAvailable as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    result["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
