import base64

import pytest
from videogen_server.providers.runway.assets import DATA_URI_MAX, AssetKind, check_asset_uri

IMG, VID = AssetKind.IMAGE, AssetKind.VIDEO
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()


@pytest.mark.parametrize(
    "uri,kind",
    [
        ("https://example.com/a.png", IMG),
        ("https://cdn.example.co.uk:8443/path/a.png?x=1#f", IMG),
        ("https://xn--bcher-kva.example/a.mp4", VID),
        ("runway://abcdefghijkl", VID),
        (PNG, IMG),
        ("data:video/mp4;base64,AAAA", VID),
        ("data:video/mp4;codecs=avc1;base64,AAAA", VID),
    ],
)
def test_accepted(uri: str, kind: AssetKind) -> None:
    assert check_asset_uri(uri, kind) is None


@pytest.mark.parametrize(
    "uri,kind,needle",
    [
        ("http://example.com/a.png", IMG, "https"),
        ("file:///etc/passwd", IMG, "https"),
        ("javascript:alert(1)", IMG, "https"),
        ("ftp://example.com/a.png", IMG, "https"),
        ("HTTPS://example.com/a.png", IMG, "https"),
        ("https://127.0.0.1/a.png", IMG, "IP"),
        ("https://10.0.0.1:8080/a.png", IMG, "IP"),
        ("https://2130706433/a.png", IMG, ""),
        ("https://0x7f.0x0.0x0.0x1/a.png", IMG, ""),
        ("https://[::1]/a.png", IMG, "IP"),
        ("https://[2001:db8::1]:443/a.png", IMG, "IP"),
        ("https://localhost/a.png", IMG, "domain"),
        ("https://user:pw@example.com/a.png", IMG, "credentials"),
        ("https://example.com/a b.png", IMG, "whitespace"),
        ("https://example.com/a\x00.png", IMG, "control"),
        ("https://example.com/a\n", IMG, "control"),
        ("https://a.b", IMG, "13"),
        ("https://example.com/" + "a" * 2100, IMG, "2048"),
        ("runway://a", VID, "13"),
        ("runway://" + "a" * 5000, VID, ""),
        ("data:video/mp4;base64,AAAA", IMG, "image"),
        (PNG, VID, "video"),
        ("data:image/png,rawbytes", IMG, "base64"),
        ("data:image/png;base64,AAA", IMG, "base64"),
        ("data:image/png;base64,AA=A", IMG, "base64"),
        ("data:image/png;base64,AA A", IMG, "base64"),
        ("data:image/png;base64,", IMG, "base64"),
        ("data:text/html;base64,AAAA", IMG, "image"),
        ("", IMG, "empty"),
        ("  https://example.com/a.png", IMG, ""),
    ],
)
def test_rejected(uri: str, kind: AssetKind, needle: str) -> None:
    problem = check_asset_uri(uri, kind)
    assert problem is not None
    assert needle.lower() in problem.lower()


def test_data_uri_size_limit() -> None:
    prefix = "data:image/png;base64,"
    n = DATA_URI_MAX - len(prefix)
    n -= n % 4
    ok = prefix + "A" * n
    assert len(ok) <= DATA_URI_MAX
    assert check_asset_uri(ok, IMG) is None
    too_big = prefix + "A" * (n + 4)
    assert len(too_big) > DATA_URI_MAX
    problem = check_asset_uri(too_big, IMG)
    assert problem is not None and "5 MiB" in problem
