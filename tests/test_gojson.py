"""JSON and times exactly as Go writes them."""
from restique.model import gojson
from restique.model.gotime import GoTime


def test_compact_and_html_escaping():
    assert gojson.dumps({"a": "<b>&", "n": [1, 2], "z": None}) == '{"a":"\\u003cb\\u003e\\u0026","n":[1,2],"z":null}'
    assert gojson.dumps({"s": "\u2028x\u2029"}) == '{"s":"\\u2028x\\u2029"}'
    assert gojson.dumps({"u": "ünï"}) == '{"u":"ünï"}'
    assert gojson.dumps({"bad": "a\udce9b"}) == '{"bad":"a\\ufffdb"}'


def test_indent_matches_marshal_indent():
    assert gojson.dumps_indent({"version": 2, "paths": ["/x"], "e": []}) == (
        '{\n  "version": 2,\n  "paths": [\n    "/x"\n  ],\n  "e": []\n}'
    )


def test_rfc3339_nano_round_trip():
    for text in [
        "2026-11-26T04:26:01.03009351Z",
        "2024-03-10T12:00:00Z",
        "2026-11-26T05:04:58.390175958+01:00",
        "1969-12-31T23:59:59.5-05:30",
        "0001-01-01T00:00:00Z",
    ]:
        assert GoTime.parse(text).rfc3339() == text


def test_fraction_trailing_zeros_dropped():
    t = GoTime(1_700_000_000_120_000_000, 0)
    assert t.rfc3339() == "2023-11-14T22:13:20.12Z"
    assert GoTime(1_700_000_000_000_000_000, 3600).rfc3339() == "2023-11-14T23:13:20+01:00"
    assert GoTime.parse("2023-11-14T23:13:20+01:00") == GoTime(1_700_000_000_000_000_000, 3600)
