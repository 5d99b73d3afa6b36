"""The web page every node serves at `/`: plain static files (no build step, no CDN).

The page talks to the node only through its public HTTP API, same-origin.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"


@get("/", include_in_schema=False, cache=False)
async def index() -> Response:
    # Read per request: it is small, and an upgrade in place shows the new page at once.
    return Response((STATIC_DIR / "index.html").read_bytes(), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


ROUTES = [index, create_static_files_router(path=STATIC_PATH, directories=[STATIC_DIR], include_in_schema=False,
                                            cache_control=None)]
