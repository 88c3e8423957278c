"""The city dashboard: server-rendered pages whose scripts read the public SensorThings API (``/v1.1``).

Pages: the map of Things (``/``), the catalogue (``/catalogue``), a Datastream's time series
(``/datastreams/{id}``) and sensor health (``/sensors``). Leaflet and uPlot are bundled in
``static/`` (``static/VENDOR.md``); nothing is loaded from another host unless a tile URL is set
(``STADSDATA_TILE_URL``, or in the map page's settings), and the map's base layer is the city's
neighbourhood outlines (CBS, bundled). The pages know nothing the API does not tell everyone.
"""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from stadsdata import __version__
from stadsdata.settings import Settings

STATIC = Path(__file__).parent / "static"
TILE_URL_ENV = "STADSDATA_TILE_URL"
"""A tile URL template (``https://…/{z}/{x}/{y}.png``) the map uses over the neighbourhood outlines."""
PAGES = (("map", "/", "Map"), ("catalogue", "/catalogue", "Catalogue"), ("sensors", "/sensors", "Sensor health"))


def routes(settings: Settings) -> list[BaseRoute]:
    """The dashboard's routes: its pages, its bundled assets and the neighbourhood base layer.

    The pages need nothing of ``settings``: they ask the API at ``/v1.1`` on the same host and follow
    its ``@iot.nextLink``s; the tile URL comes from the environment (``STADSDATA_TILE_URL``), read here.
    """
    env = Environment(loader=PackageLoader("stadsdata.web"), autoescape=select_autoescape(default=True))
    tile_url = os.environ.get(TILE_URL_ENV, "")
    tile_attribution = os.environ.get(TILE_URL_ENV + "_ATTRIBUTION", "")

    def page(template: str, title: str, **extra: object) -> HTMLResponse:
        html = env.get_template(template).render(
            title=title,
            page=template.removesuffix(".html"),
            pages=PAGES,
            version=__version__,
            tile_url=tile_url,
            tile_attribution=tile_attribution,
            **extra,
        )
        return HTMLResponse(html)

    async def map_page(request: Request) -> Response:
        return page("map.html", "Map")

    async def catalogue(request: Request) -> Response:
        return page("catalogue.html", "Catalogue")

    async def sensors(request: Request) -> Response:
        return page("sensors.html", "Sensor health")

    async def datastream(request: Request) -> Response:
        return page("datastream.html", "Time series", datastream=request.path_params["id"])

    async def neighbourhoods(request: Request) -> Response:
        import orjson

        from stadsdata.sim.places import buurten_geojson

        return Response(
            orjson.dumps(buurten_geojson()),
            media_type="application/geo+json",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    read = ["GET", "HEAD"]
    return [
        Route("/", map_page, methods=read),
        Route("/catalogue", catalogue, methods=read),
        Route("/sensors", sensors, methods=read),
        Route("/datastreams/{id:int}", datastream, methods=read),
        Route("/dashboard/neighbourhoods.geojson", neighbourhoods, methods=read),
        Mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static"),
    ]
