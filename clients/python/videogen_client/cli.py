"""The ``videogen`` command line: generate, remix, get, watch, cancel and download videos.

Machine output (``--json``) goes to stdout, one JSON object per line; progress bars and errors go to
stderr (with ``--json`` an error is one ``{"error": {...}}`` object there), so ``videogen --json get ID | jq``
always works.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from videogen.v1 import video_pb2, video_service_pb2

from ._console import command_finished
from ._console import main as console_main
from .client import VideoClient
from .download import PART_SUFFIX, Deadline
from .errors import VideogenError
from .models import (
    DEFAULT_TARGET,
    ENV_API_KEY,
    ENV_TARGET,
    is_terminal,
    load_pem,
    mode_name,
    model_to_dict,
    parse_option_value,
    resolve_target,
    status_name,
    video_to_dict,
)

# rich is the `cli` extra (pip install 'videogen-client[cli]'): the library installs without it, and then
# main() says how to get it instead of failing at import with a traceback.
try:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] != "rich":
        raise
    _RICH_MISSING = True
else:
    _RICH_MISSING = False

EXIT_OK = 0
EXIT_VIDEO_FAILED = 1
EXIT_USAGE = 2
EXIT_RPC_ERROR = 3
EXIT_LOCAL_ERROR = 4
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away

MISSING_RICH = (
    "videogen: the command line needs the 'cli' extra (rich), which is not installed.\n"
    "Install it with:  pip install 'videogen-client[cli]'\n"
)

_SIZE_RE = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*$")

MAIN_EPILOG = f"""\
environment:
  {ENV_TARGET}     server address when --target is not given (default {DEFAULT_TARGET})
  {ENV_API_KEY}    API key when --api-key is not given (sent as "authorization: Bearer <key>")
  GRPC_VERBOSITY      grpc's own log lines on stderr (default here: NONE; set DEBUG/INFO/ERROR to see them)

exit codes:
  0    success
  1    the video is FAILED or CANCELLED: the one generate returned or waited for (with or without
       --wait), or the one get or watch shows (cancel exits 0 once the video is CANCELLED: it did what
       was asked)
  2    usage error (bad arguments)
  3    the server answered with an error: "error: <CODE>: <message>", each bad field, then a "hint:"
       saying what to do (with --json: one JSON object on stderr, {{"error": {{"code": ..., "message": ...,
       "reason": ..., "field_violations": [...], "retry_after": ..., "hint": ...}}}})
  4    a local error (e.g. the output file cannot be written, a --ca-cert/--client-cert/--client-key
       file cannot be read)
  130  interrupted (Ctrl-C, at any moment: one line "interrupted"); an interrupted download keeps
       FILE.part and resumes from it next time
  141  the output's reader stopped reading (e.g. `| head`): nothing more is printed, as with other tools

examples:
  videogen generate --model gen4.5 --prompt "a cat on a skateboard" --seconds 5 --wait --output cat.mp4
  videogen --json get 3f0c9c6e-1111-4a8e-9d61-2b7e5f1f0c2a
  ID=$(videogen --json generate --model gen4.5 --prompt "a cat" --seconds 5 | jq -r .id)
  videogen watch "$ID"                 # live progress until COMPLETED, FAILED or CANCELLED
  videogen download "$ID" cat.mp4      # an interrupted download resumes from cat.mp4.part
  videogen generate --help             # every generation option (image/video inputs, size, seed, ...)
  videogen models                      # the model ids, their modes, sizes, durations and options
"""


# -- argument parsing ---------------------------------------------------------------------------------


def parse_option(text: str) -> tuple[str, Any]:
    """``key=json_value`` → ``(key, value)``; a value that is not JSON is taken as a plain string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=json_value, got {text!r}")
    return key, parse_option_value(value)


def parse_size(text: str) -> str:
    if text and not _SIZE_RE.match(text):  # "" is the (unset) default, which argparse also passes here
        raise argparse.ArgumentTypeError(f"expected WxH such as 1280x720, got {text!r}")
    return text


def parse_reference(text: str) -> tuple[str, str]:
    """``URI[#TAG]`` → ``(uri, tag)``. The text after the *last* ``#`` is the tag, so a URI that itself
    contains ``#`` is written with a trailing ``#`` (``URI#``, no tag) or ``URI#TAG``."""
    uri, sep, tag = text.rpartition("#")
    if not sep:
        uri, tag = text, ""
    if not uri:
        raise argparse.ArgumentTypeError(f"expected URI or URI#TAG, got {text!r}")
    return uri, tag


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options, accepted before and after the subcommand. On subcommands their defaults are
    SUPPRESS so that they don't overwrite values given before the subcommand."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--target",
        default=default(None),
        metavar="HOST:PORT",
        help=f"server address (default: ${ENV_TARGET} or {DEFAULT_TARGET})",
    )
    group.add_argument(
        "--api-key", default=default(None), metavar="KEY", help=f"API key (default: ${ENV_API_KEY})"
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine output: each Video as one JSON object per line (proto JSON mapping); no progress bars",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(None),
        metavar="SECONDS",
        help="give up after this many seconds (for the whole command, retries and waiting included)",
    )
    group.add_argument("--tls", action="store_true", default=default(False), help="connect with TLS")
    group.add_argument(
        "--ca-cert",
        default=default(None),
        metavar="PEM",
        help="root certificates for TLS (implies --tls; default: the system's)",
    )
    group.add_argument(
        "--client-cert",
        default=default(None),
        metavar="PEM",
        help="client certificate chain for mutual TLS (implies --tls; needs --client-key)",
    )
    group.add_argument(
        "--client-key",
        default=default(None),
        metavar="PEM",
        help="private key of --client-cert, for mutual TLS",
    )


def _add_generation_options(p: argparse.ArgumentParser) -> None:
    """The options generate and remix share (they mean the same in both requests)."""
    p.add_argument(
        "--reference",
        dest="references",
        action="append",
        type=parse_reference,
        default=[],
        metavar="URI[#TAG]",
        help="a video reference, for video-to-video models that accept them (repeatable); #TAG names it "
        "for prompts. The text after the last '#' is the tag, so a URI containing '#' needs a trailing "
        "'#' (URI#) or '#TAG'",
    )
    p.add_argument(
        "--reference-image",
        dest="reference_images",
        action="append",
        type=parse_reference,
        default=[],
        metavar="URI[#TAG]",
        help="an image reference (style or asset guidance), for models that accept them (repeatable); "
        "URI#TAG as for --reference",
    )
    p.add_argument("--seconds", type=int, help="duration in seconds (default: the model's)")
    p.add_argument("--size", type=parse_size, default="", metavar="WxH", help="output size, e.g. 1280x720")
    p.add_argument("--seed", type=_non_negative_int, help="seed, 0 to 4294967295 (default: random)")
    p.add_argument(
        "--audio",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="generate audio, for models that can (default: the model's)",
    )
    p.add_argument(
        "--public-figure-threshold", choices=("auto", "low"), default="", help="content moderation setting"
    )
    p.add_argument(
        "--option",
        dest="options",
        action="append",
        type=parse_option,
        default=[],
        metavar="KEY=JSON",
        help="extra Runway field in Runway's camelCase, passed through as-is (repeatable), e.g. "
        "--option 'negativePrompt=\"blur\"'; a value that is not valid JSON is sent as a string",
    )
    p.add_argument(
        "--request-id", metavar="ID", help="idempotency key (default: a new UUID); reuse it to retry safely"
    )
    p.add_argument(
        "--wait", action="store_true", help="wait until the video is COMPLETED, FAILED or CANCELLED"
    )
    p.add_argument("--output", metavar="FILE", help="download the result to FILE (implies --wait)")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="videogen",
        description="Generate videos with Runway's models through the videogen service, watch them and "
        "download the results.",
        epilog=MAIN_EPILOG,
        formatter_class=formatter,
    )
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=description,
            epilog=f"example:\n  {example}",
            formatter_class=formatter,
        )
        _add_global_options(p, suppress=True)
        return p

    gen = add(
        "generate",
        "start a generation (optionally wait for it and download it)",
        "Start a video generation. The mode follows from the inputs: --video makes it video-to-video, "
        "--image image-to-video, otherwise text-to-video. Prints the new video (usually QUEUED); "
        "with --wait, shows its progress until it ends; with --output, also downloads it.",
        'videogen generate --model gen4.5 --prompt "a cat" --seconds 5 --wait --output cat.mp4',
    )
    gen.add_argument("--model", required=True, help="Runway model id, e.g. gen4.5, gen4_turbo, veo3.1")
    gen.add_argument("--prompt", default="", help="the text prompt (required for text-to-video)")
    source = gen.add_mutually_exclusive_group()
    source.add_argument(
        "--image", metavar="URI", default="", help="input image (https URL, data: URI or runway:// URI)"
    )
    source.add_argument(
        "--video",
        metavar="URI",
        default="",
        help="source video for video-to-video (https, data: or runway://)",
    )
    source.add_argument(
        "--input-file",
        metavar="FILE",
        help="a local input image: uploaded first (as `videogen upload`), its runway:// URI used as --image",
    )
    source.add_argument(
        "--video-file",
        metavar="FILE",
        help="a local source video: uploaded first (as `videogen upload`), its runway:// URI used as --video",
    )
    _add_generation_options(gen)

    upload = add(
        "upload",
        "upload a local image or video for use as an input",
        "Upload a local image or video (PNG, JPEG, WebP, MP4, MOV, WebM; 512 B to 200 MB) to Runway through "
        "the service, with a progress bar, and print its runway:// URI (valid 24 hours) for --image, "
        "--video, --reference or --reference-image of generate. The server checks the type from the "
        "bytes: a file whose name says otherwise is refused.",
        "videogen upload clip.mp4",
    )
    upload.add_argument("file", metavar="FILE", help="the file to upload")
    upload.add_argument("--filename", help="the name Runway keeps (default: FILE's name)")
    upload.add_argument(
        "--content-type", default="", help="the media type, e.g. video/mp4 (default: from the bytes)"
    )
    remix = add(
        "remix",
        "make a new video from one of your completed videos",
        "Start a video-to-video generation whose source is one of your COMPLETED videos: the server sends "
        "it to Runway itself (its output URL while Runway keeps it, else the archived copy, uploaded). "
        "Prints the new video (its source_video_id is ID); --wait and --output as for generate.",
        'videogen remix ID --prompt "make it snow" --wait --output snow.mp4',
    )
    remix.add_argument("id", metavar="ID", help="the id of the COMPLETED video to start from")
    remix.add_argument("--prompt", default="", help="the text prompt: what to change")
    remix.add_argument("--model", default="", help="a video-to-video model id (default: aleph2)")
    remix.add_argument(
        "--index", type=_non_negative_int, default=0, help="which output of the source video (default 0)"
    )
    _add_generation_options(remix)

    get = add(
        "get", "show a video's current state", "Print the current state of one video.", "videogen get ID"
    )
    get.add_argument("id", metavar="ID", help="the video's id")

    watch = add(
        "watch",
        "follow a video's state until it ends",
        "Follow a video's state live until it is COMPLETED, FAILED or CANCELLED: one line per change, "
        "with a live progress bar on a terminal (one JSON object per change with --json). Reconnects if "
        "the connection drops. Exits 0 if the video COMPLETED, 1 if it FAILED or was CANCELLED.",
        "videogen watch ID",
    )
    watch.add_argument("id", metavar="ID", help="the video's id")

    cancel = add(
        "cancel",
        "cancel a queued or running video",
        "Cancel a queued or running video and print it. A COMPLETED or FAILED video cannot be cancelled "
        "(FAILED_PRECONDITION); cancelling a CANCELLED one is a no-op.",
        "videogen cancel ID",
    )
    cancel.add_argument("id", metavar="ID", help="the video's id")

    download = add(
        "download",
        "download a completed video",
        "Download a COMPLETED video's content to FILE with a progress bar. Bytes go to FILE.part, which is "
        "renamed to FILE once complete and verified; an existing FILE.part is resumed.",
        "videogen download ID cat.mp4",
    )
    download.add_argument("id", metavar="ID", help="the video's id")
    download.add_argument("file", metavar="FILE", help="where to save the video")
    download.add_argument(
        "--index", type=_non_negative_int, default=0, help="which output to download (default 0)"
    )
    download.add_argument(
        "--no-resume", dest="resume", action="store_false", help="ignore an existing FILE.part and start over"
    )

    add(
        "models",
        "list the models and what each takes",
        "List every model the server knows (ListModels), one row per mode: its status (legacy ones name "
        "their replacement), whether a prompt is needed, the sizes (* marks the default), the durations "
        "in seconds (the default in parentheses), audio, seed, references and the provider_options keys. "
        "--json prints each model as one JSON object per line, with everything (option values too).",
        "videogen models",
    )
    listing = add(
        "list",
        "list your videos, newest first",
        "List your own videos, newest first, from the service's records (no call to Runway): one row "
        "each with its id, status, model, creation time and prompt. One page (--page-size, default 50, "
        "at most 1000) unless --all; when more remain, says how to get the next page. --json prints one "
        'object per video, then {"next_page_token": ...} when more remain.',
        "videogen list --filter 'status = COMPLETED AND model = \"gen4.5\"' --all",
    )
    listing.add_argument(
        "--filter",
        default="",
        metavar="EXPR",
        help='which videos: status = COMPLETED (any status), model = "gen4.5", joined by AND',
    )
    listing.add_argument(
        "--page-size", type=_non_negative_int, default=0, metavar="N", help="videos per page (default 50)"
    )
    listing.add_argument(
        "--page-token", default="", metavar="TOKEN", help="the page to show (printed by a previous list)"
    )
    listing.add_argument("--all", action="store_true", help="every page, one after the other")
    return parser


# -- output ---------------------------------------------------------------------------------------------


def format_error(err: VideogenError) -> str:
    """The lines printed for a failed call: ``error: <CODE>: <message>``, each field violation, and the
    suggested retry delay."""
    lines = [f"error: {err.code_name}: {err.message or err.reason or 'no message'}"]
    lines.extend(f"  - {field or '(request)'}: {description}" for field, description in err.field_violations)
    if err.retry_after is not None:
        lines.append(f"retry after {err.retry_after:g}s")
    return "\n".join(lines)


# What to do about each status code, printed as "hint: ..." under the error (and as "hint" with --json).
_HINTS: dict[str, str] = {
    "CANCELLED": "the call was cancelled before it finished; run the command again",
    "UNKNOWN": "the server failed in an unexpected way; try again, and report it if it persists",
    "INVALID_ARGUMENT": "fix the arguments named above (see `videogen COMMAND --help`)",
    "DEADLINE_EXCEEDED": "no answer in time; raise --timeout or try again later",
    "NOT_FOUND": "no video with that id is visible to you (with caller keys, videos belong to the key "
    "that created them)",
    "ALREADY_EXISTS": "this --request-id was already used for a different request; use a new one",
    "PERMISSION_DENIED": "your API key may not do this",
    "RESOURCE_EXHAUSTED": "a quota or limit was reached; retry later",
    "FAILED_PRECONDITION": "the video is not in a state that allows this (see the message above; "
    "`videogen get ID` shows its state)",
    "ABORTED": "the operation was interrupted by a concurrent change; retry",
    "OUT_OF_RANGE": "the requested offset is past the end of the content; run download with --no-resume",
    "UNIMPLEMENTED": "the server does not support this call (is it an older version?)",
    "INTERNAL": "the server failed; try again, and report it if it persists",
    "UNAVAILABLE": "the service or Runway is unreachable; retry later",
    "DATA_LOSS": "the content arrived incomplete or corrupt; run the download again (it resumes)",
    "UNAUTHENTICATED": f"pass a valid --api-key or set ${ENV_API_KEY}",
}


def _failed_precondition_hint(err: VideogenError) -> str:
    """FAILED_PRECONDITION covers several situations; the ErrorInfo reason (and its ``status`` metadata)
    says which, so the hint does too."""
    status = err.metadata.get("status", "")
    if err.reason == "VIDEO_NOT_COMPLETED":
        if status in ("FAILED", "CANCELLED"):
            return f"the video is {status} and has no content; generate it again"
        return (
            f"the video is {status or 'not COMPLETED'} yet: wait for it (`videogen watch ID`) and download "
            "it once it is COMPLETED"
        )
    if err.reason == "VIDEO_ALREADY_FINISHED":
        return (
            f"the video already ended {status or 'COMPLETED'}; there is nothing to cancel (cancelling a "
            "finished video would delete its output)"
        )
    if err.reason == "VIDEO_CREATING":
        return "the video is still being created at Runway; run the cancel again in a moment"
    if err.reason == "VIDEO_OUTPUT_GONE":
        return (
            "Runway no longer has this video's output (outputs expire after about a day, and the built-in "
            "simulator forgets them when the server restarts); generate it again"
        )
    if err.reason == "VIDEO_OUTPUT_EXPIRED":
        return (
            "the service kept this video's content for its retention period (VIDEOGEN_ARCHIVE_RETENTION), "
            "which has ended, and deleted it; the video's record remains (`videogen get ID`); "
            "generate it again"
        )
    if err.reason == "UPSTREAM_INSUFFICIENT_CREDITS":
        return "the service's Runway account has no credits left; ask its operator to add credits"
    return _HINTS["FAILED_PRECONDITION"]


def _connection_hint(err: VideogenError, where: str, tls: bool, client_cert: bool) -> str:
    """UNAVAILABLE without an ErrorInfo: the service was not reached. grpc's message says whether the
    connection was refused or a TLS mistake ended it; name the flag that fixes the latter."""
    message = err.message
    if "CERTIFICATE_VERIFY_FAILED" in message:
        return (
            f"the certificate of the server at {where} is not trusted: pass the CA certificate that signed "
            "it with --ca-cert PEM"
        )
    if "WRONG_VERSION_NUMBER" in message:
        return f"the server at {where} does not speak TLS: run without --tls, --ca-cert and --client-cert"
    if "Socket closed" in message or "Connection reset" in message or "handshake" in message.lower():
        if not tls:
            return (
                f"the server at {where} closed the connection: if it serves TLS, add --tls (and --ca-cert "
                "PEM when its certificate is not signed by a CA this system trusts)"
            )
        if not client_cert:
            return (
                f"the server at {where} closed the TLS connection: if it requires a client certificate "
                "(mutual TLS), pass --client-cert PEM and --client-key PEM"
            )
        return (
            f"the server at {where} refused the TLS connection: is --client-cert signed by a CA the "
            "server trusts (its VIDEOGEN_TLS_CLIENT_CA)?"
        )
    return f"is the server running at {where}? (--target or ${ENV_TARGET})"


def error_hint(
    err: VideogenError, target: str | None = None, *, tls: bool = False, client_cert: bool = False
) -> str:
    """A one-line suggestion of what to do next about an error. ``tls`` / ``client_cert``: whether the
    call was made with TLS / with a client certificate (to name the right flag after a TLS mistake)."""
    if err.code_name == "UNAVAILABLE":
        if err.reason == "UPSTREAM_OUTCOME_UNKNOWN":
            return (
                "Runway may or may not have started the video; retrying with the same --request-id "
                "returns it rather than paying twice"
            )
        if not err.reason:  # no ErrorInfo: the server itself was not reached
            return _connection_hint(err, resolve_target(target), tls, client_cert)
    if err.code_name == "FAILED_PRECONDITION":
        return _failed_precondition_hint(err)
    return _HINTS.get(err.code_name, "")


def error_to_dict(
    err: VideogenError, target: str | None = None, *, tls: bool = False, client_cert: bool = False
) -> dict[str, Any]:
    """The error as one JSON object, for --json."""
    return {
        "code": err.code_name,
        "message": err.message,
        "reason": err.reason,
        "field_violations": [{"field": f, "description": d} for f, d in err.field_violations],
        "retry_after": err.retry_after,
        "resource_name": err.resource_name,
        "hint": error_hint(err, target, tls=tls, client_cert=client_cert),
    }


def _credits(value: float) -> str:
    return f"{value:g}"


_ENDED_LABEL = {
    video_pb2.VIDEO_STATUS_COMPLETED: "completed",
    video_pb2.VIDEO_STATUS_FAILED: "failed",
    video_pb2.VIDEO_STATUS_CANCELLED: "cancelled",
}


def _status_text(video: video_pb2.Video, *, percent: bool = True) -> str:
    """``IN_PROGRESS (RUNNING)  39%`` while the video runs. A FAILED or CANCELLED video shows no
    percentage (it will never get further), and a CANCELLED one not Runway's last status word either (the
    task was deleted: ``RUNNING`` is only what Runway said before)."""
    text = status_name(video.status)
    ended_early = video.status in (video_pb2.VIDEO_STATUS_FAILED, video_pb2.VIDEO_STATUS_CANCELLED)
    if video.upstream_status and video.status != video_pb2.VIDEO_STATUS_CANCELLED:
        text += f" ({video.upstream_status})"
    if percent and not ended_early:
        text += f"  {video.progress}%"
    return text


def format_video(video: video_pb2.Video) -> str:
    """A human-readable, multi-line view of a video."""
    rows: list[tuple[str, str]] = [
        ("id", video.id),
        ("status", _status_text(video)),
        ("model", video.model),
        ("mode", mode_name(video.mode)),
    ]
    if video.prompt:
        rows.append(("prompt", video.prompt))
    if video.source_video_id:
        rows.append(("remix of", video.source_video_id))
    if video.seconds:
        rows.append(("seconds", str(video.seconds)))
    if video.size:
        rows.append(("size", video.size))
    for out in video.videos:
        size = f" {out.size_bytes} bytes" if out.HasField("size_bytes") else ""
        rows.append((f"output {out.index}", f"{out.content_type or 'unknown type'}{size}"))
    if video.HasField("error"):
        retry = " (retryable)" if video.error.retryable else ""
        rows.append(("error", f"{video.error.code or 'error'}: {video.error.message}{retry}"))
    if video.HasField("cost_credits"):
        rows.append(("credits", _credits(video.cost_credits)))
    elif video.HasField("estimated_credits"):
        rows.append(("credits", f"up to {_credits(video.estimated_credits)}"))
    # complete_time is when the video reached its terminal state: label it with what happened then.
    ended = _ENDED_LABEL.get(video.status, "completed")
    times: tuple[tuple[str, Literal["create_time", "complete_time", "expire_time"]], ...] = (
        ("created", "create_time"),
        (ended, "complete_time"),
        ("expires", "expire_time"),
    )
    for label, field in times:
        if video.HasField(field):
            rows.append((label, getattr(video, field).ToJsonString()))
    if video.request_id:
        rows.append(("request id", video.request_id))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in rows)


def format_update(video: video_pb2.Video) -> str:
    """One line for one state change, as ``watch`` prints it."""
    ended_early = video.status in (video_pb2.VIDEO_STATUS_FAILED, video_pb2.VIDEO_STATUS_CANCELLED)
    percent = "" if ended_early else f"{video.progress:>3}%"
    line = f"{time.strftime('%H:%M:%S')}  {status_name(video.status):<11} {percent:>4}"
    if video.upstream_status and video.status != video_pb2.VIDEO_STATUS_CANCELLED:
        line += f"  {video.upstream_status}"
    if video.HasField("error"):
        line += f"  {video.error.code or 'error'}: {video.error.message}"
    return line


_MODE_WORDS = {
    video_pb2.GENERATION_MODE_TEXT_TO_VIDEO: "text",
    video_pb2.GENERATION_MODE_IMAGE_TO_VIDEO: "image",
    video_pb2.GENERATION_MODE_VIDEO_TO_VIDEO: "video",
}
_PROMPT_WORDS = {
    video_service_pb2.PROMPT_REQUIREMENT_REQUIRED: "required",
    video_service_pb2.PROMPT_REQUIREMENT_OPTIONAL: "optional",
    video_service_pb2.PROMPT_REQUIREMENT_NOT_ACCEPTED: "none",
}
_SIZES_PER_LINE = 3


def _model_status(model: video_service_pb2.Model) -> str:
    if model.status == video_service_pb2.MODEL_STATUS_LEGACY:
        return f"legacy: use {model.replacement}" if model.replacement else "legacy"
    return "current, third-party" if model.third_party else "current"


def _seconds(model: video_service_pb2.Model) -> str:
    if not model.HasField("durations"):
        return "from input"
    values = list(model.durations.allowed_seconds)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        allowed = f"{values[0]}-{values[-1]}"
    else:
        allowed = ",".join(str(v) for v in values)
    return f"{allowed} ({model.durations.default_seconds})"


def _sizes(mode: video_service_pb2.ModelMode) -> list[str]:
    if not mode.sizes:
        return ["from input"]
    marked = [f"{size}*" if size == mode.default_size else size for size in mode.sizes]
    return [" ".join(marked[i : i + _SIZES_PER_LINE]) for i in range(0, len(marked), _SIZES_PER_LINE)]


def _references(mode: video_service_pb2.ModelMode) -> list[str]:
    lines = []
    for label, present, refs in (
        ("images", mode.HasField("reference_images"), mode.reference_images),
        ("videos", mode.HasField("references"), mode.references),
    ):
        if present:
            lines.append(f"{label} <={refs.max_count}" if refs.HasField("max_count") else label)
    return lines or ["-"]


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def format_models(models: Sequence[video_service_pb2.Model]) -> str:
    """The models as a table, one row per mode; a cell may take several lines (sizes, options)."""
    header = [
        "MODEL",
        "STATUS",
        "MODE",
        "PROMPT",
        "SIZES",
        "SECONDS",
        "AUDIO",
        "SEED",
        "REFERENCES",
        "OPTIONS",
    ]
    rows: list[list[list[str]]] = []
    for model in models:
        for i, mode in enumerate(model.modes):
            first = i == 0
            options = [o.key for o in model.provider_options] or ["-"]
            rows.append(
                [
                    [model.id if first else ""],
                    [_model_status(model) if first else ""],
                    [_MODE_WORDS.get(mode.mode, mode_name(mode.mode).lower())],
                    [_PROMPT_WORDS.get(mode.prompt, "?")],
                    _sizes(mode),
                    [_seconds(model) if first else ""],
                    [_yes(model.audio) if first else ""],
                    [_yes(model.seed) if first else ""],
                    _references(mode),
                    options if first else [""],
                ]
            )
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, *(len(line) for line in cell)) for w, cell in zip(widths, row, strict=True)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        for n in range(max(len(cell) for cell in row)):
            cells = [cell[n] if n < len(cell) else "" for cell in row]
            out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


class _Output:
    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def live(self) -> bool:
        """Whether to draw progress bars (stderr is a terminal and machine output is off)."""
        return not self.json and self.err.is_terminal

    def emit(self, data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def video(self, video: video_pb2.Video) -> None:
        if self.json:
            self.emit(video_to_dict(video))
        else:
            self.out.print(format_video(video), markup=False)

    def note(self, text: str) -> None:
        """A human-only message (stderr), silent with --json."""
        if not self.json:
            self.err.print(text, markup=False)


def _changed(a: video_pb2.Video | None, b: video_pb2.Video) -> bool:
    return a is None or (a.status, a.progress, a.upstream_status) != (b.status, b.progress, b.upstream_status)


def _wait(client: VideoClient, video_id: str, ui: _Output, deadline: Deadline) -> video_pb2.Video:
    """Waits for a terminal state, with a progress bar on a terminal or a line per change otherwise."""
    if not ui.live:
        last: list[video_pb2.Video] = []

        def plain(video: video_pb2.Video) -> None:
            if _changed(last[-1] if last else None, video):
                ui.note(format_update(video))
            last[:] = [video]

        return client.wait(video_id, timeout=deadline.remaining(), on_update=plain)

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=ui.err,
        transient=False,
    ) as progress:
        task = progress.add_task("waiting", total=100)

        def bar(video: video_pb2.Video) -> None:
            progress.update(task, description=_status_text(video, percent=False), completed=video.progress)

        return client.wait(video_id, timeout=deadline.remaining(), on_update=bar)


def _download(
    client: VideoClient,
    video_id: str,
    path: str,
    ui: _Output,
    deadline: Deadline,
    *,
    index: int,
    resume: bool,
) -> int:
    partial = path + PART_SUFFIX
    if resume and os.path.exists(partial):
        ui.note(f"resuming {path} from {os.path.getsize(partial)} bytes already in {partial}")
    if not ui.live:
        # No terminal: a plain line at every quarter, so logs and transcripts still show progress.
        quarters: list[int] = []

        def plain(done: int, total: int | None) -> None:
            quarter = 4 * done // total if total else 0
            if total and done and (not quarters or quarter > quarters[-1]):
                quarters.append(quarter)
                ui.note(f"downloaded {done} of {total} bytes ({100 * done // total}%)")

        return client.download(
            video_id,
            path,
            index=index,
            on_progress=_done_when_all_received(plain),
            timeout=deadline.remaining(),
            resume=resume,
        )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=ui.err,
    ) as progress:
        task: TaskID = progress.add_task(f"downloading {path}", total=None)

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        return client.download(
            video_id,
            path,
            index=index,
            on_progress=_done_when_all_received(on_progress),
            timeout=deadline.remaining(),
            resume=resume,
        )


def _done_when_all_received(
    on_progress: Callable[[int, int | None], None],
) -> Callable[[int, int | None], None]:
    """`on_progress`, marking the command's work done once every byte has arrived. What is left (fsync, the
    rename, closing the stream) takes milliseconds and runs partly inside grpc's C code, where a
    KeyboardInterrupt raised by a late Ctrl-C cannot be handled cleanly (it ended the process with 255): from
    here on a Ctrl-C is ignored and the download completes with exit 0."""

    def wrapped(done: int, total: int | None) -> None:
        on_progress(done, total)
        if total is not None and done >= total:
            command_finished()

    return wrapped


def _saved(ui: _Output, video_id: str, path: str, size: int) -> None:
    if ui.json:
        ui.emit({"id": video_id, "path": path, "bytes": size})
    else:
        ui.note(f"saved {size} bytes to {path}")


def _outcome(video: video_pb2.Video) -> int:
    return EXIT_OK if video.status == video_pb2.VIDEO_STATUS_COMPLETED else EXIT_VIDEO_FAILED


# -- commands -------------------------------------------------------------------------------------------


def _upload(
    client: VideoClient,
    path: str,
    ui: _Output,
    deadline: Deadline,
    *,
    filename: str | None = None,
    content_type: str = "",
) -> video_service_pb2.UploadResponse:
    """Upload `path` with a progress bar on a terminal (a line per quarter otherwise)."""
    if not ui.live:
        quarters: list[int] = []

        def plain(sent: int, total: int) -> None:
            quarter = 4 * sent // total if total else 0
            if total and (not quarters or quarter > quarters[-1]):
                quarters.append(quarter)
                ui.note(f"uploaded {sent} of {total} bytes ({100 * sent // total}%)")

        return client.upload(
            path, filename=filename, content_type=content_type, progress=plain, timeout=deadline.remaining()
        )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=ui.err,
    ) as progress:
        task: TaskID = progress.add_task(f"uploading {path}", total=None)

        def on_progress(sent: int, total: int) -> None:
            progress.update(task, completed=sent, total=total)

        return client.upload(
            path,
            filename=filename,
            content_type=content_type,
            progress=on_progress,
            timeout=deadline.remaining(),
        )


def _uploaded_note(ui: _Output, path: str, up: video_service_pb2.UploadResponse) -> None:
    expires = up.expire_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")
    ui.note(f"uploaded {path}: {up.size_bytes} bytes, {up.content_type}, sha256 {up.sha256}, until {expires}")


def _cmd_upload(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    up = _upload(client, args.file, ui, deadline, filename=args.filename, content_type=args.content_type)
    if ui.json:
        ui.emit(
            {
                "uri": up.uri,
                "expire_time": up.expire_time.ToJsonString(),
                "size_bytes": up.size_bytes,
                "sha256": up.sha256,
                "content_type": up.content_type,
            }
        )
    else:
        _uploaded_note(ui, args.file, up)
        ui.out.print(up.uri, markup=False, soft_wrap=True)  # alone on stdout: URI=$(videogen upload F)
    return EXIT_OK


def _generation_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields generate and remix share, from the options `_add_generation_options` defines."""
    return {
        "seconds": args.seconds,
        "size": args.size,
        "seed": args.seed,
        "audio": args.audio,
        "references": args.references,
        "reference_images": args.reference_images,
        "public_figure_threshold": args.public_figure_threshold,
        "provider_options": dict(args.options) or None,
        "request_id": args.request_id,
    }


def _cmd_generate(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    image, video_uri = args.image, args.video
    for path, kind in ((args.input_file, "image"), (args.video_file, "video")):
        if path:
            up = _upload(client, path, ui, deadline)
            _uploaded_note(ui, path, up)
            if kind == "image":
                image = up.uri
            else:
                video_uri = up.uri
    video = client.generate(
        args.model,
        args.prompt,
        input_reference=image,
        video_uri=video_uri,
        **_generation_fields(args),
        timeout=deadline.remaining(),
    )
    return _after_start(client, video, args, ui, deadline)


def _after_start(
    client: VideoClient, video: video_pb2.Video, args: argparse.Namespace, ui: _Output, deadline: Deadline
) -> int:
    """What generate and remix do with the video they started: print it, or wait (and download) with
    --wait / --output."""
    if not (args.wait or args.output):
        ui.video(video)
        # A video that is already FAILED (e.g. the create's outcome was unknown) or CANCELLED will never
        # complete: `ID=$(videogen --json generate ...)` must not look like a success.
        return _outcome(video) if is_terminal(video) else EXIT_OK
    ui.note(f"started {video.id}")
    if not is_terminal(video):
        video = _wait(client, video.id, ui, deadline)
    ui.video(video)
    if video.status != video_pb2.VIDEO_STATUS_COMPLETED:
        return EXIT_VIDEO_FAILED
    if args.output:
        size = _download(client, video.id, args.output, ui, deadline, index=0, resume=True)
        _saved(ui, video.id, args.output, size)
    return EXIT_OK


def _cmd_remix(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    video = client.remix(
        args.id,
        args.prompt,
        index=args.index,
        model=args.model,
        **_generation_fields(args),
        timeout=deadline.remaining(),
    )
    return _after_start(client, video, args, ui, deadline)


def _cmd_get(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    video = client.get(args.id, timeout=deadline.remaining())
    ui.video(video)
    return _outcome(video) if is_terminal(video) else EXIT_OK


def _cmd_cancel(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    video = client.cancel(args.id, timeout=deadline.remaining())
    ui.video(video)
    # CANCELLED is what was asked for (the server refuses to cancel a COMPLETED or FAILED video).
    return EXIT_OK if video.status == video_pb2.VIDEO_STATUS_CANCELLED else _outcome(video)


def _watch_live(
    client: VideoClient, video_id: str, ui: _Output, deadline: Deadline
) -> video_pb2.Video | None:
    """On a terminal: a live progress bar, with one line per change printed above it."""
    last: video_pb2.Video | None = None
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=ui.err,
    ) as progress:
        task = progress.add_task(f"watching {video_id}", total=100)
        for video in client.watch(video_id, timeout=deadline.remaining()):
            if _changed(last, video):
                progress.console.print(format_update(video), markup=False)
            progress.update(task, description=_status_text(video, percent=False), completed=video.progress)
            last = video
    return last


def _cmd_watch(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    if ui.live:
        final = _watch_live(client, args.id, ui, deadline)
        if final is None:  # watch always yields at least the current state
            return EXIT_RPC_ERROR
        ui.out.print(format_video(final), markup=False)
        return _outcome(final)
    last: video_pb2.Video | None = None
    for video in client.watch(args.id, timeout=deadline.remaining()):
        if ui.json:
            ui.emit(video_to_dict(video))
        elif _changed(last, video):
            ui.out.print(format_update(video), markup=False)
        last = video
    if last is None:  # watch always yields at least the current state
        return EXIT_RPC_ERROR
    if not ui.json:
        ui.out.print(format_video(last), markup=False)
    return _outcome(last)


def _cmd_download(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    size = _download(client, args.id, args.file, ui, deadline, index=args.index, resume=args.resume)
    _saved(ui, args.id, args.file, size)
    return EXIT_OK


def _cmd_models(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    models = client.list_models(timeout=deadline.remaining())
    if ui.json:
        for model in models:
            ui.emit(model_to_dict(model))
    else:
        ui.out.print(format_models(models), markup=False)
        ui.note("* the size sent when --size is not given; --json shows option values and prompt limits")
    return EXIT_OK


def format_list_row(video: video_pb2.Video) -> tuple[str, str, str, str, str]:
    """One ``list`` row: id, status, model, creation time, prompt (cut to one short line)."""
    created = video.create_time.ToJsonString() if video.HasField("create_time") else ""
    prompt = " ".join(video.prompt.split())
    if len(prompt) > 40:
        prompt = prompt[:39] + "…"
    return video.id, status_name(video.status), video.model, created, prompt


def _cmd_list(client: VideoClient, args: argparse.Namespace, ui: _Output, deadline: Deadline) -> int:
    token = args.page_token
    rows: list[tuple[str, str, str, str, str]] = []
    while True:
        page = client.list_videos(
            filter=args.filter, page_size=args.page_size, page_token=token, timeout=deadline.remaining()
        )
        for video in page.videos:
            if ui.json:
                ui.emit(video_to_dict(video))
            else:
                rows.append(format_list_row(video))
        token = page.next_page_token
        if not token or not args.all:
            break
    if not ui.json:
        header = ("ID", "STATUS", "MODEL", "CREATED", "PROMPT")
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            ui.out.print(line.rstrip(), markup=False)
        if not rows:
            ui.note("no videos" + (" match the filter" if args.filter else ""))
    if token:
        if ui.json:
            ui.emit({"next_page_token": token})
        else:
            ui.note(f"more videos: add --page-token {token} (or --all)")
    return EXIT_OK


COMMANDS: dict[str, Callable[[VideoClient, argparse.Namespace, _Output, Deadline], int]] = {
    "generate": _cmd_generate,
    "remix": _cmd_remix,
    "get": _cmd_get,
    "watch": _cmd_watch,
    "cancel": _cmd_cancel,
    "download": _cmd_download,
    "models": _cmd_models,
    "list": _cmd_list,
    "upload": _cmd_upload,
}


class _PemError(Exception):
    """A certificate or key file that cannot be used; the message names the file and the option."""


def read_pem(path: str | None, option: str) -> bytes | None:
    """The contents of a PEM file given with ``option`` (None when not given): the clients' ``load_pem``,
    with its errors as the command line reports them."""
    try:
        return load_pem(path, option)
    except OSError as exc:
        raise _PemError(f"error: {option}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # "<option>: <path> is not a PEM file (no -----BEGIN line)"
        raise _PemError(f"error: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI and returns its exit code (argparse exits with 2 on usage errors)."""
    if _RICH_MISSING:
        sys.stderr.write(MISSING_RICH)
        return EXIT_LOCAL_ERROR
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.client_cert is None) != (args.client_key is None):
        parser.error("--client-cert and --client-key (mutual TLS) go together")
    ui = _Output(args.json)
    try:
        root_certificates = read_pem(args.ca_cert, "--ca-cert")
        certificate_chain = read_pem(args.client_cert, "--client-cert")
        private_key = read_pem(args.client_key, "--client-key")
    except _PemError as exc:
        ui.err.print(str(exc), markup=False)
        return EXIT_LOCAL_ERROR
    deadline = Deadline(args.timeout)
    tls = bool(args.tls or root_certificates or certificate_chain)
    try:
        client = VideoClient(
            args.target,
            api_key=args.api_key,
            tls=args.tls,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
        )
        try:
            code = COMMANDS[args.command](client, args, ui, deadline)
        except KeyboardInterrupt:
            # The channel is left open: closing it right after an interrupted call can block for minutes
            # in grpc, and the process is ending anyway (the console entry exits without finalizers).
            raise
        except BaseException:
            client.close()
            raise
        command_finished()  # the work is done: a Ctrl-C from here on does not change the exit code
        client.close()
        return code
    except VideogenError as err:
        if ui.json:
            error = error_to_dict(err, args.target, tls=tls, client_cert=certificate_chain is not None)
            sys.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
        else:
            ui.err.print(format_error(err), markup=False)
            hint = error_hint(err, args.target, tls=tls, client_cert=certificate_chain is not None)
            if hint:
                ui.err.print(f"hint: {hint}", markup=False)
        return EXIT_RPC_ERROR
    except BrokenPipeError as exc:
        if exc.filename is not None:  # a file the command writes, not its output: a local error as any other
            ui.err.print(f"error: {exc.filename}: {exc.strerror or exc}", markup=False)
            return EXIT_LOCAL_ERROR
        # Whoever reads our output stopped reading (`videogen --json models | head -1`): end as Unix tools do
        # then, quietly. Output still buffered must not fail again at exit: it goes nowhere.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        ui.err.print(f"error:{where}: {exc.strerror or exc}", markup=False)
        return EXIT_LOCAL_ERROR
    except KeyboardInterrupt:
        ui.err.print("interrupted", markup=False)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    console_main()
