"""The service's route table: every path it answers, once, with what each route is.

`ROUTES` is the one list. Everything else that needs to know the routes is
derived from it here: which paths stay open when the service has an API token
(`OPEN_PATHS`, `OPEN_PREFIXES`), the route label of a request in the metrics
(`route_label`: never the raw path, so a client cannot invent label values),
and which routes read images (`READING_ROUTES`, whose 4xx answers count as
refused images). `mnist_keras.serving.app` registers a handler for each route
the table says is ours. Plain data: this module imports nothing but the
standard library.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Route:
    """One route: its path and methods, and what the service does for it."""

    path: str
    methods: tuple[str, ...] = ("GET",)
    guarded: bool = True  # needs the API token, when the service has one
    reads_images: bool = False  # a request sends images: its 4xx answers are refused images
    files: bool = False  # a directory of files: `path` is a prefix, and every file below it is this route
    built_in: bool = False  # answered by FastAPI itself (the API docs), not by a handler of ours


ROUTES: tuple[Route, ...] = (
    Route("/", guarded=False),  # the drawing page
    Route("/static", guarded=False, files=True),  # its script and style
    Route("/healthz", guarded=False),  # liveness, and readiness: 503 while shutting down
    Route("/about", guarded=False),  # which run answers
    Route("/metrics"),  # the Prometheus scrape
    Route("/predict", methods=("POST",), reads_images=True),  # read one digit
    Route("/predict/batch", methods=("POST",), reads_images=True),  # read several
    Route("/read", methods=("POST",), reads_images=True),  # read every digit of a number, in reading order
    Route("/docs", guarded=False, built_in=True),  # Swagger UI
    # Swagger UI's OAuth2 helper page: the service uses no OAuth2, so it stays behind the token.
    Route("/docs/oauth2-redirect", built_in=True),
    Route("/redoc", guarded=False, built_in=True),
    Route("/openapi.json", methods=("GET", "HEAD"), guarded=False, built_in=True),
    # The docs' scripts and styles, served from the package so that the docs work offline.
    Route("/static-offline-docs", guarded=False, files=True, built_in=True),
)
OTHER_ROUTE = "other"  # the label of any path not in the table

# What stays open with a token: the page and its files, liveness, which run answers, and the docs.
OPEN_PATHS = frozenset(route.path for route in ROUTES if not route.guarded and not route.files)
OPEN_PREFIXES = tuple(route.path + "/" for route in ROUTES if not route.guarded and route.files)
READING_ROUTES = tuple(route.path for route in ROUTES if route.reads_images)
BUILT_IN_PATHS = frozenset(route.path for route in ROUTES if route.built_in)
# The routes that are one path each, by it: most requests are found here at once, not by a walk through the table.
EXACT_ROUTES = {route.path: route for route in ROUTES if not route.files}


def route_for(path: str) -> Route | None:
    """The route a request path belongs to: the exact path, or a files route it lies below; None if neither."""
    exact = EXACT_ROUTES.get(path)
    if exact is not None:
        return exact
    for route in ROUTES:
        if route.files and path.startswith(route.path + "/"):
            return route
    return None


def is_open_path(path: str) -> bool:
    """Whether `path` is answered without the API token."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def route_label(path: str) -> str:
    """The metrics' label for a request path: its route's path, or "other"."""
    route = route_for(path)
    return route.path if route is not None else OTHER_ROUTE
