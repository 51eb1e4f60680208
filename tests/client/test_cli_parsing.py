"""The CLI's argument parsing, ``--option`` values, error formatting and request building (no server)."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from videogen.v1 import video_pb2
from videogen_client import (
    InvalidArgument,
    NotFound,
    Unavailable,
    VideoFailed,
    VideogenError,
    from_rpc_error,
    raise_for_status,
)
from videogen_client.cli import (
    EXIT_LOCAL_ERROR,
    EXIT_RPC_ERROR,
    build_parser,
    format_error,
    format_update,
    format_video,
    main,
    parse_option,
    parse_reference,
)
from videogen_client.download import RetryPolicy
from videogen_client.errors import make_error
from videogen_client.models import auth_metadata, build_generate_request


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


# -- subcommands ------------------------------------------------------------------------------------


def test_generate_all_flags() -> None:
    args = parse(
        "--target", "h:1", "--api-key", "k", "--json", "--timeout", "30",
        "generate", "--model", "gen4.5", "--prompt", "a cat", "--image", "https://x.test/a.png",
        "--seconds", "5", "--size", "1280x720", "--seed", "42", "--no-audio",
        "--option", "negativePrompt=\"blur\"", "--option", "n=3",
        "--request-id", "rid", "--wait", "--output", "out.mp4",
    )  # fmt: skip
    assert args.command == "generate"
    assert (args.target, args.api_key, args.json, args.timeout) == ("h:1", "k", True, 30.0)
    assert (args.model, args.prompt, args.image, args.video) == (
        "gen4.5",
        "a cat",
        "https://x.test/a.png",
        "",
    )
    assert (args.seconds, args.size, args.seed, args.audio) == (5, "1280x720", 42, False)
    assert dict(args.options) == {"negativePrompt": "blur", "n": 3}
    assert (args.request_id, args.wait, args.output) == ("rid", True, "out.mp4")


def test_generate_defaults() -> None:
    args = parse("generate", "--model", "gen4.5")
    assert args.prompt == "" and args.image == "" and args.video == ""
    assert args.seconds is None and args.seed is None and args.audio is None
    assert args.options == [] and args.request_id is None and not args.wait and args.output is None
    assert args.target is None and args.api_key is None and not args.json and args.timeout is None


def test_audio_flag() -> None:
    assert parse("generate", "--model", "veo3.1", "--audio").audio is True


@pytest.mark.parametrize(
    "argv",
    [
        ["generate"],  # --model is required
        ["generate", "--model", "m", "--image", "a", "--video", "b"],  # one source only
        ["generate", "--model", "m", "--size", "16:9"],
        ["generate", "--model", "m", "--seconds", "five"],
        ["generate", "--model", "m", "--seed", "-1"],
        ["generate", "--model", "m", "--option", "novalue"],
        ["--timeout", "0", "get", "x"],
        ["download", "x"],  # FILE is required
        ["download", "x", "f", "--index", "-1"],
        [],  # a command is required
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_global_options_after_subcommand() -> None:
    args = parse("get", "abc", "--json", "--target", "h:2", "--timeout", "1.5")
    assert (args.command, args.id, args.json, args.target, args.timeout) == ("get", "abc", True, "h:2", 1.5)


def test_global_options_before_subcommand_are_kept() -> None:
    # The subcommand's copy of the global options must not reset values given before it.
    args = parse("--json", "--target", "h:3", "--api-key", "k", "watch", "abc")
    assert (args.json, args.target, args.api_key, args.id) == (True, "h:3", "k", "abc")


@pytest.mark.parametrize("command", ["get", "watch", "cancel"])
def test_id_commands(command: str) -> None:
    args = parse(command, "3f0c9c6e-1111-4a8e-9d61-2b7e5f1f0c2a")
    assert args.command == command and args.id == "3f0c9c6e-1111-4a8e-9d61-2b7e5f1f0c2a"


def test_download() -> None:
    args = parse("download", "abc", "cat.mp4")
    assert (args.id, args.file, args.index, args.resume) == ("abc", "cat.mp4", 0, True)
    args = parse("download", "abc", "cat.mp4", "--index", "2", "--no-resume")
    assert (args.index, args.resume) == (2, False)


@pytest.mark.parametrize("command", ["generate", "get", "watch", "cancel", "download"])
def test_every_subcommand_help_has_description_and_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example:\n  videogen " in out
    assert "--target" in out  # global options are documented on every subcommand


def test_main_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out and "VIDEOGEN_TARGET" in out and "VIDEOGEN_API_KEY" in out
    for code in ("0", "1", "2", "3"):
        assert f"\n  {code} " in out


# -- --option ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('negativePrompt="blur"', ("negativePrompt", "blur")),
        ("negativePrompt=blur", ("negativePrompt", "blur")),  # not JSON: taken as a string
        ("n=3", ("n", 3)),
        ("x=2.5", ("x", 2.5)),
        ("flag=true", ("flag", True)),
        ("nothing=null", ("nothing", None)),
        ('list=[1, "a"]', ("list", [1, "a"])),
        ('obj={"a": {"b": 1}}', ("obj", {"a": {"b": 1}})),
        ("eq=a=b", ("eq", "a=b")),  # only the first "=" separates
        ("empty=", ("empty", "")),
        (" k =1", ("k", 1)),
    ],
)
def test_parse_option(text: str, expected: tuple[str, object]) -> None:
    assert parse_option(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=1", ""])
def test_parse_option_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_option(text)


# -- errors -----------------------------------------------------------------------------------------


def _bad_request() -> error_details_pb2.BadRequest:
    v = error_details_pb2.BadRequest.FieldViolation
    return error_details_pb2.BadRequest(
        field_violations=[
            v(field="seconds", description="must be one of 5, 10 for gen4.5"),
            v(field="size", description="must be one of 1280x720, 720x1280"),
        ]
    )


def test_format_error_with_field_violations() -> None:
    err = InvalidArgument(
        grpc.StatusCode.INVALID_ARGUMENT,
        "the request is invalid",
        "",
        [error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="videogen"), _bad_request()],
    )
    assert err.reason == "INVALID_ARGUMENT" and err.domain == "videogen"
    assert err.field_violations == [
        ("seconds", "must be one of 5, 10 for gen4.5"),
        ("size", "must be one of 1280x720, 720x1280"),
    ]
    assert format_error(err) == (
        "error: INVALID_ARGUMENT: the request is invalid\n"
        "  - seconds: must be one of 5, 10 for gen4.5\n"
        "  - size: must be one of 1280x720, 720x1280"
    )


def test_format_error_with_retry_after() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3, nanos=500_000_000))
    err = Unavailable(grpc.StatusCode.UNAVAILABLE, "Runway is unreachable", "UPSTREAM_UNAVAILABLE", [retry])
    assert err.retry_after == 3.5
    assert format_error(err) == "error: UNAVAILABLE: Runway is unreachable\nretry after 3.5s"


def test_format_error_plain() -> None:
    err = make_error(grpc.StatusCode.NOT_FOUND, "video 'x' not found")
    assert isinstance(err, NotFound) and isinstance(err, VideogenError)
    assert format_error(err) == "error: NOT_FOUND: video 'x' not found"
    assert str(err) == "NOT_FOUND: video 'x' not found"


class _FakeRpcError(grpc.RpcError):
    """What grpc raises for a failed call: code(), details() and trailing_metadata()."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, bytes], ...]) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


def _rpc_error(
    code: grpc.StatusCode, message: str, *details: object, status_message: str = ""
) -> _FakeRpcError:
    status = status_pb2.Status(code=code.value[0], message=status_message or message)
    for d in details:
        status.details.add().Pack(d)  # type: ignore[arg-type]
    return _FakeRpcError(code, message, (("grpc-status-details-bin", status.SerializeToString()),))


def test_from_rpc_error_unpacks_details() -> None:
    info = error_details_pb2.ErrorInfo(reason="VIDEO_NOT_FOUND", domain="videogen", metadata={"id": "x"})
    res = error_details_pb2.ResourceInfo(resource_type="videogen.v1.Video", resource_name="x")
    err = from_rpc_error(_rpc_error(grpc.StatusCode.NOT_FOUND, "video 'x' not found", info, res))
    assert isinstance(err, NotFound)
    assert (err.reason, err.metadata, err.resource_name) == ("VIDEO_NOT_FOUND", {"id": "x"}, "x")
    assert len(err.details) == 2


def test_from_rpc_error_invalid_argument() -> None:
    err = from_rpc_error(_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad", _bad_request()))
    assert isinstance(err, InvalidArgument)
    assert [f for f, _ in err.field_violations] == ["seconds", "size"]


def test_from_rpc_error_mismatched_status_still_uses_details() -> None:
    # A proxy rewrote the message: keep the call's code/message, still read the details.
    err = from_rpc_error(
        _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "rewritten", _bad_request(), status_message="original")
    )
    assert isinstance(err, InvalidArgument) and err.message == "rewritten" and len(err.field_violations) == 2


def test_from_rpc_error_without_details() -> None:
    err = from_rpc_error(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect", ()))
    assert isinstance(err, Unavailable) and err.reason == "" and err.details == []
    assert format_error(err) == "error: UNAVAILABLE: failed to connect"


def test_main_reports_rpc_errors_with_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 1: the call fails (UNAVAILABLE after retries, or the deadline).
    code = main(["--target", "127.0.0.1:1", "--timeout", "3", "get", "x"])
    assert code == EXIT_RPC_ERROR
    err = capsys.readouterr().err
    assert err.startswith(("error: UNAVAILABLE: ", "error: DEADLINE_EXCEEDED: "))
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint: "), lines  # the error, then what to do about it


# -- requests, videos, policy -------------------------------------------------------------------------


def test_build_generate_request() -> None:
    req = build_generate_request("gen4.5", "a cat")
    uuid.UUID(req.request_id)  # a fresh UUID makes the client's own retries safe
    assert not req.HasField("seconds") and not req.HasField("seed") and not req.HasField("audio")
    assert not req.HasField("provider_options") and not req.HasField("content_moderation")

    req = build_generate_request(
        "gen4_aleph",
        video_uri="https://x.test/v.mp4",
        seconds=0,
        seed=0,
        audio=False,
        references=["https://x.test/r.mp4", ("https://x.test/s.mp4", "style")],
        reference_images=[("https://x.test/i.png", "hero")],
        public_figure_threshold="low",
        provider_options={"negativePrompt": "blur", "n": 2},
        request_id="rid",
    )
    assert req.HasField("seconds") and req.seconds == 0 and req.HasField("seed") and req.HasField("audio")
    assert [(r.uri, r.tag) for r in req.references] == [
        ("https://x.test/r.mp4", ""),
        ("https://x.test/s.mp4", "style"),
    ]
    assert req.reference_images[0].tag == "hero"
    assert req.content_moderation.public_figure_threshold == "low"
    assert dict(req.provider_options) == {"negativePrompt": "blur", "n": 2.0}
    assert req.request_id == "rid"


def test_auth_metadata() -> None:
    assert auth_metadata("k1") == (("authorization", "Bearer k1"),)
    assert auth_metadata(None) == ()


def test_format_video_and_update() -> None:
    video = video_pb2.Video(
        id="v1",
        status=video_pb2.VIDEO_STATUS_FAILED,
        upstream_status="FAILED",
        model="gen4.5",
        prompt="a cat",
        mode=video_pb2.GENERATION_MODE_TEXT_TO_VIDEO,
        error=video_pb2.VideoError(code="SAFETY.INPUT.TEXT", message="blocked"),
    )
    text = format_video(video)
    assert "FAILED (FAILED)" in text and "TEXT_TO_VIDEO" in text and "SAFETY.INPUT.TEXT: blocked" in text
    assert "FAILED" in format_update(video)
    with pytest.raises(VideoFailed):
        raise_for_status(video)
    video.status = video_pb2.VIDEO_STATUS_COMPLETED
    assert raise_for_status(video) is video


def test_retry_policy() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=2.0, max_retry_after=10)
    first = policy.delay(1)
    assert first is not None and 0.5 <= first <= 1.0
    assert policy.delay(2, retry_after=4.0) == 4.0  # the server's RetryInfo wins
    assert policy.delay(2, retry_after=60.0) is None  # too long to wait: give up
    assert policy.delay(3) is None  # attempts exhausted


# -- references and mutual TLS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://x.test/a.png", ("https://x.test/a.png", "")),
        ("https://x.test/a.png#hero", ("https://x.test/a.png", "hero")),
        ("https://x.test/a.png#", ("https://x.test/a.png", "")),  # a trailing '#': no tag
        ("https://x.test/a.png#frag#", ("https://x.test/a.png#frag", "")),  # a URI containing '#'
        ("https://x.test/a.png#frag#hero", ("https://x.test/a.png#frag", "hero")),
        ("runway://asset/1#style", ("runway://asset/1", "style")),
    ],
)
def test_parse_reference(text: str, expected: tuple[str, str]) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["", "#tag", "#"])
def test_parse_reference_rejects_an_empty_uri(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_reference(text)


def test_generate_references_are_repeatable() -> None:
    args = parse(
        "generate", "--model", "seedance2", "--prompt", "p",
        "--reference", "https://x.test/v.mp4#clip", "--reference", "runway://v2",
        "--reference-image", "https://x.test/a.png#hero", "--reference-image", "https://x.test/b.png#c#",
    )  # fmt: skip
    assert args.references == [("https://x.test/v.mp4", "clip"), ("runway://v2", "")]
    assert args.reference_images == [("https://x.test/a.png", "hero"), ("https://x.test/b.png#c", "")]
    req = build_generate_request(
        args.model, args.prompt, references=args.references, reference_images=args.reference_images
    )
    assert [(r.uri, r.tag) for r in req.references] == args.references
    assert [(r.uri, r.tag) for r in req.reference_images] == args.reference_images
    assert parse("generate", "--model", "m").references == []


def test_generate_help_documents_the_tag_form(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("generate", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "--reference URI[#TAG]" in text and "--reference-image URI[#TAG]" in text
    assert "trailing '#' (URI#)" in text


def test_client_cert_flags_before_and_after_the_command() -> None:
    args = parse("--tls", "--client-cert", "c.pem", "--client-key", "k.pem", "get", "x")
    assert (args.tls, args.client_cert, args.client_key) == (True, "c.pem", "k.pem")
    args = parse("get", "x", "--client-cert", "c.pem", "--client-key", "k.pem")
    assert (args.client_cert, args.client_key) == ("c.pem", "k.pem")
    args = parse("get", "x")
    assert args.client_cert is None and args.client_key is None


@pytest.mark.parametrize("flag", ["--client-cert", "--client-key"])
def test_client_cert_and_key_go_together(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([flag, "x.pem", "get", "x"])
    assert exc.value.code == 2
    assert "--client-cert and --client-key" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["--ca-cert", "--client-cert", "--client-key"])
def test_unreadable_or_non_pem_certificate_files_exit_4(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "ok.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    files = {"--ca-cert": str(pem), "--client-cert": str(pem), "--client-key": str(pem)}
    files[bad] = str(tmp_path / "missing.pem")
    argv = [arg for item in files.items() for arg in item]
    assert main([*argv, "--target", "127.0.0.1:1", "get", "x"]) == EXIT_LOCAL_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: cannot read {tmp_path / 'missing.pem'}: ") and "No such file" in err

    not_pem = tmp_path / "key.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    files[bad] = str(not_pem)
    argv = [arg for item in files.items() for arg in item]
    assert main([*argv, "--target", "127.0.0.1:1", "get", "x"]) == EXIT_LOCAL_ERROR
    assert (
        capsys.readouterr().err.strip() == f"error: {bad}: {not_pem} is not a PEM file (no -----BEGIN line)"
    )
