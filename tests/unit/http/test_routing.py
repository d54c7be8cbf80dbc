"""The routing table on its own: no sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from methodhub.http.messages import Request, Response
from methodhub.http.routing import MethodNotAllowed, RouteNotFound, Routes, decode_segment


def handler(name: str) -> Callable[[Request], Response]:
    """A handler whose ``__name__`` says which route matched."""

    def handle(request: Request) -> Response:
        return Response(200, name.encode())

    handle.__name__ = name
    return handle


@pytest.fixture
def routes() -> Routes:
    table = Routes()
    table.add("GET", "/health", handler("health"))
    table.add("POST", "/twins/{device_id}/methods", handler("device"))
    table.add("POST", "/twins/{device_id}/modules/{module_id}/methods", handler("module"))
    table.add("GET", "/devices/{device_id}", handler("get_device"))
    table.add("PUT", "/devices/{device_id}", handler("put_device"))
    table.add("GET", "/devices/{device_id}/modules", handler("list_modules"))
    table.add("GET", "/devices/{device_id}/{other}", handler("device_other"))
    return table


def test_static_path(routes: Routes) -> None:
    found, params = routes.match("GET", "/health")
    assert found.__name__ == "health"
    assert params == {}


def test_parameters(routes: Routes) -> None:
    found, params = routes.match("POST", "/twins/pump-17/modules/left/methods")
    assert found.__name__ == "module"
    assert params == {"device_id": "pump-17", "module_id": "left"}


def test_each_segment_is_percent_decoded_after_splitting(routes: Routes) -> None:
    found, params = routes.match("POST", "/twins/dev%201%2Fx/methods")
    assert found.__name__ == "device"
    assert params == {"device_id": "dev 1/x"}  # %2F stays inside its segment


def test_utf8_percent_encoding(routes: Routes) -> None:
    _, params = routes.match("POST", "/twins/caf%C3%A9/methods")
    assert params == {"device_id": "café"}


def test_literal_segments_match_their_percent_encoded_form(routes: Routes) -> None:
    found, params = routes.match("POST", "/tw%69ns/x/methods")
    assert found.__name__ == "device" and params == {"device_id": "x"}
    found, _ = routes.match("GET", "/h%65alth")
    assert found.__name__ == "health"


def test_encoded_slash_does_not_make_a_static_path(routes: Routes) -> None:
    with pytest.raises(RouteNotFound):
        routes.match("GET", "/health%2Fx")


def test_unknown_path_is_not_found(routes: Routes) -> None:
    for path in ("/nope", "/twins/x", "/twins/x/methods/extra", "/health/", ""):
        with pytest.raises(RouteNotFound):
            routes.match("GET", path)


def test_parameters_never_match_empty_segments(routes: Routes) -> None:
    with pytest.raises(RouteNotFound):
        routes.match("POST", "/twins//methods")


def test_wrong_method_lists_the_allowed_ones(routes: Routes) -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        routes.match("DELETE", "/devices/x")
    assert caught.value.allowed == ["GET", "HEAD", "PUT"]
    with pytest.raises(MethodNotAllowed) as caught:
        routes.match("GET", "/twins/x/methods")
    assert caught.value.allowed == ["POST"]


def test_static_and_pattern_routes_on_the_same_path_combine() -> None:
    table = Routes()
    table.add("GET", "/devices/special", handler("static"))
    table.add("DELETE", "/devices/{device_id}", handler("delete"))
    assert table.match("GET", "/devices/special")[0].__name__ == "static"
    found, params = table.match("DELETE", "/devices/special")
    assert found.__name__ == "delete" and params == {"device_id": "special"}
    with pytest.raises(MethodNotAllowed) as caught:
        table.match("PUT", "/devices/special")
    assert caught.value.allowed == ["DELETE", "GET", "HEAD"]


def test_head_falls_back_to_get(routes: Routes) -> None:
    assert routes.match("HEAD", "/health")[0].__name__ == "health"
    assert routes.match("HEAD", "/devices/x")[0].__name__ == "get_device"


def test_explicit_head_route_wins() -> None:
    table = Routes()
    table.add("GET", "/x", handler("get"))
    table.add("HEAD", "/x", handler("head"))
    assert table.match("HEAD", "/x")[0].__name__ == "head"


def test_literal_beats_parameter_whatever_the_order(routes: Routes) -> None:
    found, params = routes.match("GET", "/devices/d1/modules")
    assert found.__name__ == "list_modules" and params == {"device_id": "d1"}
    found, params = routes.match("GET", "/devices/d1/twin")
    assert found.__name__ == "device_other" and params == {"device_id": "d1", "other": "twin"}


def test_a_pattern_without_the_method_falls_through_to_one_with_it() -> None:
    table = Routes()
    table.add("GET", "/a/b", handler("static-get"))
    table.add("POST", "/a/{x}", handler("param-post"))
    found, params = table.match("POST", "/a/b")
    assert found.__name__ == "param-post" and params == {"x": "b"}


@pytest.mark.parametrize(
    "method, pattern",
    [
        ("GET", "no-slash"),
        ("GET", "/a/{x}/{x}"),
        ("GET", "/a/b{x}"),
        ("GET", "/a/{not-an-identifier}"),
        ("G T", "/a"),
        ("", "/a"),
    ],
)
def test_bad_routes_are_refused(method: str, pattern: str) -> None:
    with pytest.raises(ValueError):
        Routes().add(method, pattern, handler("x"))


def test_duplicate_routes_are_refused(routes: Routes) -> None:
    with pytest.raises(ValueError):
        routes.add("GET", "/health", handler("again"))
    with pytest.raises(ValueError):
        routes.add("POST", "/twins/{device_id}/methods", handler("again"))


def test_decode_segment() -> None:
    assert decode_segment("plain") == "plain"
    assert decode_segment("a%20b%2Fc") == "a b/c"
    assert decode_segment("%E2%82%AC") == "€"
    assert decode_segment("%FF") == "\ufffd"  # invalid UTF-8, as urllib.parse.unquote does
    assert decode_segment("bad%zz") == "bad%zz"
