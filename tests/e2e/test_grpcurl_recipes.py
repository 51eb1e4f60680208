"""The README's recipes, run as written (bash, `.venv/bin/grpcurl`, `.venv/bin/videogen`, the Python client).

Each fenced ``sh`` or ``python`` block is taken from the README unchanged. The only inputs are environment
variables the recipes read with a default (``ADDR=${ADDR:-127.0.0.1:50051}``, ``OUT``, ``SIM_PORT``,
``VIDEOGEN_TARGET`` for the Python client) and, for the blocks that start the service with ``make run``, the
service's own settings that keep parallel test runs apart (``VIDEOGEN_LISTEN``, ``VIDEOGEN_DATA_DIR``,
``VIDEOGEN_METRICS_LISTEN=off``, a short ``VIDEOGEN_POLL_INTERVAL``).

Calling blocks run in a scratch directory holding only a ``.venv`` link to the repository's, so
``.venv/bin/…`` resolves as from the repository root, and each test checks that nothing but ``$OUT`` was
written: a recipe that saved a file into the working directory (the checkout, for a user) fails. Blocks that
start the service (``make run``) run from the repository root in a session of their own, which the test ends
with SIGTERM. The tests of the Python client's own README run its first example likewise."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningServer, start_server, stop_server
from videogen.v1 import video_service_pb2

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CLIENT_README = REPO / "clients" / "python" / "README.md"
VENV = REPO / ".venv"
GRPCURL = VENV / "bin" / "grpcurl"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

GRPCURL_SECTION = "## Calling it with grpcurl"
FAULT_SECTION = "### When Runway fails"
CLIENT_SECTION = "## The Python client and CLI"
TLS_SECTION = "### Mutual TLS, step by step"
LIST_SECTION = "### Listing videos"


def blocks(heading: str, lang: str = "sh") -> list[str]:
    """The fenced ``lang`` blocks between ``heading`` and the next heading of any level (code fences skipped,
    so a ``# comment`` inside a block is not a heading)."""
    lines = README.read_text(encoding="utf-8").splitlines(keepends=True)
    assert heading + "\n" in lines, f"README.md has no {heading!r} heading"
    found: list[str] = []
    current: list[str] | None = None
    in_fence = False
    for line in lines[lines.index(heading + "\n") + 1 :]:
        if line.startswith("```"):
            if in_fence:
                if current is not None:
                    found.append("".join(current))
                current, in_fence = None, False
            else:
                in_fence = True
                current = [] if line.strip() == f"```{lang}" else None
        elif in_fence:
            if current is not None:
                current.append(line)
        elif line.startswith("#"):
            break
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require(tool: str) -> None:
    """A recipe that needs a system tool: skipped without it, but in CI (`.ci/run` must provide it) failed."""
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed: the README's recipe needs it")
        pytest.skip(f"{tool} is not installed")


def recipe_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNWAYML_", "VIDEOGEN_", "OTEL_"))}
    env["OUT"] = str(tmp_path / "out")
    env.update(extra)
    return env


def scratch(tmp_path: Path) -> Path:
    """The working directory of calling blocks: a `.venv` link and nothing else."""
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)
    link = workdir / ".venv"
    if not link.exists():
        link.symlink_to(VENV, target_is_directory=True)
    return workdir


def assert_wrote_only_out(tmp_path: Path) -> None:
    stray = sorted(p.name for p in scratch(tmp_path).iterdir() if p.name != ".venv")
    assert not stray, f"a recipe wrote into the working directory (the checkout, for a user): {stray}"


async def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Runs a block to its end; returns the exit code and stdout+stderr."""
    assert GRPCURL.exists(), f"{GRPCURL} is missing: run `make install`"
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def run_sh(block: str, env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """bash with errexit, nounset and pipefail, in the scratch directory."""
    return await run(["bash", "-euo", "pipefail", "-c", block], env, scratch(tmp_path))


async def run_python(block: str, env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    return await run([str(VENV / "bin" / "python"), "-c", block], env, scratch(tmp_path))


@contextlib.asynccontextmanager
async def service(block: str, env: dict[str, str], log_path: Path) -> AsyncIterator[str]:
    """Runs a block that starts the service (`make run`) from the repository root, until the service says it
    listens; yields its output so far; at the end SIGTERMs the block's whole session (the service, and a
    simulator the block started in the background)."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        **env,
        "VIDEOGEN_LISTEN": address,
        "VIDEOGEN_METRICS_LISTEN": "off",
        "VIDEOGEN_POLL_INTERVAL": "0.2",
    }
    env["VIDEOGEN_DATA_DIR"] = str(log_path.parent / "data")
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", block, cwd=REPO, env=env, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while "videogen listening on" not in _text(log_path):
                if proc.returncode is not None:
                    raise AssertionError(f"the block ended ({proc.returncode}):\n{_text(log_path)}")
                await asyncio.sleep(0.05)
        yield address
    finally:
        await _end_session(proc)


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


async def _end_session(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError, ProcessLookupError):
        async with asyncio.timeout(20):
            await proc.wait()
            while True:  # the service and the simulator may outlive bash for their grace period
                os.killpg(proc.pid, 0)  # ProcessLookupError once the whole session has ended
                await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


# -- the layout the tests below rely on ---------------------------------------------------------------------


def test_the_readme_has_the_recipe_blocks_the_tests_run() -> None:
    assert len(blocks(GRPCURL_SECTION)) == 3
    assert len(blocks(FAULT_SECTION)) == 2
    cli = blocks(CLIENT_SECTION)
    assert len(cli) == 2 and cli[0].startswith("pip install"), cli  # the install lines are not run
    assert len(blocks(CLIENT_SECTION, "python")) == 1
    assert len(blocks(TLS_SECTION)) == 3
    assert len(blocks(TLS_SECTION, "python")) == 1
    for block in [*blocks(GRPCURL_SECTION), blocks(FAULT_SECTION)[1], cli[1], blocks(TLS_SECTION)[2]]:
        assert block.startswith("ADDR=${ADDR:-127.0.0.1:50051}\n"), block.splitlines()[0]


# -- grpcurl ------------------------------------------------------------------------------------------------


async def test_list_describe_generate_watch_and_download(
    videogen_server: RunningServer, tmp_path: Path
) -> None:
    env = recipe_env(tmp_path, ADDR=videogen_server.address)
    code, out = await run_sh(blocks(GRPCURL_SECTION)[0], env, tmp_path)
    assert code == 0, out
    assert "videogen.v1.VideoService\n" in out
    assert "grpc.health.v1.Health\n" in out
    assert "service VideoService {" in out  # describe of the service
    assert "rpc WatchStatus ( .videogen.v1.WatchStatusRequest ) returns ( stream" in out
    assert "message GenerateRequest {" in out  # describe of the message
    assert '"status": "SERVING"' in out
    match = re.search(rf"^video ({UUID})$", out, flags=re.M)
    assert match, out
    statuses = re.findall(r'"status": "(VIDEO_STATUS_[A-Z_]+)"', out)
    assert statuses and statuses[-1] == "VIDEO_STATUS_COMPLETED", statuses

    video = (await videogen_server.stub.Get(video_service_pb2.GetRequest(id=match.group(1)))).video
    saved = (tmp_path / "out" / "video.mp4").read_bytes()
    assert saved[4:8] == b"ftyp"
    assert saved == videogen_server.simulator.output_bytes(video.upstream_task_id)
    assert_wrote_only_out(tmp_path)


async def test_errors_show_their_details(videogen_server: RunningServer, tmp_path: Path) -> None:
    env = recipe_env(tmp_path, ADDR=videogen_server.address)
    code, out = await run_sh(blocks(GRPCURL_SECTION)[1], env, tmp_path)
    assert code == 0, out  # each failing call is followed by `|| echo "exit $?"`
    invalid, not_found = out.split("exit 67\n")
    assert "Code: InvalidArgument" in invalid
    bad_request = _detail(invalid, "google.rpc.BadRequest")
    assert bad_request["field_violations"][0]["field"] == "seconds"
    assert "4, 6, 8" in bad_request["field_violations"][0]["description"]
    assert _detail(invalid, "google.rpc.ErrorInfo")["domain"] == "videogen"

    assert not_found.endswith("exit 69\n"), not_found
    assert "Code: NotFound" in not_found
    assert _detail(not_found, "google.rpc.ErrorInfo")["reason"]
    assert _detail(not_found, "google.rpc.ResourceInfo")["resource_type"] == "videogen.v1.Video"


async def test_list_models_and_an_unknown_model(videogen_server: RunningServer, tmp_path: Path) -> None:
    env = recipe_env(tmp_path, ADDR=videogen_server.address)
    code, out = await run_sh(blocks(GRPCURL_SECTION)[2], env, tmp_path)
    assert code == 0, out  # the failing Generate is followed by `|| echo "exit $?"`
    listing, refused = out.split("ERROR:", 1)
    lines = listing.splitlines()
    models = (await videogen_server.stub.ListModels(video_service_pb2.ListModelsRequest())).models
    assert [line.split()[0] for line in lines] == [m.id for m in models]
    gen45 = next(line for line in lines if line.startswith("gen4.5 "))
    assert gen45 == (
        "gen4.5 MODEL_STATUS_CURRENT ['GENERATION_MODE_TEXT_TO_VIDEO', 'GENERATION_MODE_IMAGE_TO_VIDEO'] "
        "seconds: [2, 3, 4, 5, 6, 7, 8, 9, 10] default: 5 use: -"
    )
    assert any(line.startswith("aleph2 ") and "seconds: input" in line for line in lines), lines
    assert any(
        line.startswith("gen4_aleph MODEL_STATUS_LEGACY") and line.endswith("use: aleph2") for line in lines
    )

    assert refused.endswith("exit 67\n"), refused
    assert "Code: InvalidArgument" in refused
    assert "known models: gen4.5, gen4_turbo, veo3.1" in refused
    violation = _detail(refused, "google.rpc.BadRequest")["field_violations"][0]
    assert violation["field"] == "model" and "gen4.5" in violation["description"]
    assert _detail(refused, "google.rpc.ErrorInfo")["reason"] == "UPSTREAM_REJECTED"
    assert_wrote_only_out(tmp_path)


async def test_an_upstream_outage_from_the_standalone_simulator_shows_retry_info(tmp_path: Path) -> None:
    """Both blocks as written: the standalone simulator and `make run` pointed at it, then a 503 queued on
    the simulator's /_sim/faults with curl, then Generate."""
    require("curl")
    start, call = blocks(FAULT_SECTION)
    env = recipe_env(tmp_path, SIM_PORT=str(free_port()))
    async with service(start, env, tmp_path / "service.log") as address:
        code, out = await run_sh(call, {**env, "ADDR": address}, tmp_path)
    assert code == 0, out
    assert out.endswith("exit 78\n"), out
    assert '"pending": [{"route": "create", "kind": "status"' in out  # the simulator took the fault
    assert "Code: Unavailable" in out
    assert _detail(out, "google.rpc.ErrorInfo")["reason"] == "UPSTREAM_OUTCOME_UNKNOWN"
    assert _detail(out, "google.rpc.RetryInfo")["retry_delay"] == "1s"
    assert_wrote_only_out(tmp_path)


# -- the CLI and the Python client --------------------------------------------------------------------------


async def test_the_cli_recipe(videogen_server: RunningServer, tmp_path: Path) -> None:
    env = recipe_env(tmp_path, ADDR=videogen_server.address)
    code, out = await run_sh(blocks(CLIENT_SECTION)[1], env, tmp_path)
    assert code == 0, out
    for name in ("boat.mp4", "out.mp4"):
        assert (tmp_path / "out" / name).read_bytes()[4:8] == b"ftyp", name
    last = json.loads(out.strip().splitlines()[-1])  # `--json get`: the proto3 JSON mapping, .proto names
    assert last["status"] == "VIDEO_STATUS_COMPLETED" and "upstream_task_id" in last, last
    assert_wrote_only_out(tmp_path)


async def test_the_python_example(videogen_server: RunningServer, tmp_path: Path) -> None:
    env = recipe_env(tmp_path, VIDEOGEN_TARGET=videogen_server.address)
    code, out = await run_python(blocks(CLIENT_SECTION, "python")[0], env, tmp_path)
    assert code == 0, out
    match = re.fullmatch(rf"({UUID}) VIDEO_STATUS_COMPLETED\n", out)
    assert match, out  # the status printed by name; no error branch taken
    video = (await videogen_server.stub.Get(video_service_pb2.GetRequest(id=match.group(1)))).video
    saved = (tmp_path / "out" / "boat.mp4").read_bytes()
    assert saved == videogen_server.simulator.output_bytes(video.upstream_task_id)
    assert_wrote_only_out(tmp_path)


async def test_the_python_client_readme_example(tmp_path: Path) -> None:
    """clients/python/README.md's first example, with its caller key configured on the server."""
    text = CLIENT_README.read_text(encoding="utf-8")
    example = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)[0]
    key = re.search(r'api_key="([^"]+)"', example)
    assert key, example
    server = await start_server(str(tmp_path / "data"), api_keys={"demo": key.group(1)})
    try:
        env = recipe_env(tmp_path, VIDEOGEN_TARGET=server.address)
        workdir = tmp_path / "example"
        workdir.mkdir()
        code, out = await run([str(VENV / "bin" / "python"), "-c", example], env, workdir)
    finally:
        await stop_server(server)
    assert code == 0, out
    assert out.splitlines()[-1].startswith("VIDEO_STATUS_COMPLETED "), out  # on_update prints names
    assert (workdir / "cat.mp4").read_bytes()[4:8] == b"ftyp", out


# -- mutual TLS ---------------------------------------------------------------------------------------------


async def test_mutual_tls_from_openssl_to_grpcurl_the_cli_and_python(tmp_path: Path) -> None:
    """The openssl block makes the CA and both certificates under $OUT/tls; `make run` serves mutual TLS with
    them; grpcurl, the CLI and the Python client call it with the client certificate, and grpcurl without
    one is refused."""
    require("openssl")
    make_certs, start, calls = blocks(TLS_SECTION)
    env = recipe_env(tmp_path)
    code, out = await run_sh(make_certs, env, tmp_path)
    assert code == 0, out
    tls = tmp_path / "out" / "tls"
    for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        assert (tls / name).read_text().startswith("-----BEGIN "), name

    async with service(start, env, tmp_path / "service.log") as address:
        assert "TLS mutual" in (tmp_path / "service.log").read_text()
        code, out = await run_sh(calls, {**env, "ADDR": address}, tmp_path)
        py_code, py_out = await run_python(
            blocks(TLS_SECTION, "python")[0], {**env, "VIDEOGEN_TARGET": address}, tmp_path
        )
    assert code == 0, out
    assert "videogen.v1.VideoService\n" in out
    assert '"status": "SERVING"' in out
    assert (tmp_path / "out" / "boat-tls.mp4").read_bytes()[4:8] == b"ftyp"
    assert re.search(r"^refused: exit [1-9][0-9]*$", out, flags=re.M), out
    assert out.count("videogen.v1.VideoService\n") == 1, out  # the refused `list` listed nothing
    assert py_code == 0, py_out
    assert re.fullmatch(rf"{UUID} VIDEO_STATUS_QUEUED\n", py_out), py_out
    assert_wrote_only_out(tmp_path)


def _detail(output: str, type_name: str) -> dict[str, Any]:
    """The detail of one type from grpcurl's ``Details:`` list (one JSON object per numbered line)."""
    for line in output.splitlines():
        _, sep, payload = line.partition(")\t")
        if sep and payload.startswith("{"):
            detail: dict[str, Any] = json.loads(payload)
            if detail.get("@type") == f"type.googleapis.com/{type_name}":
                return detail
    raise AssertionError(f"no {type_name} in grpcurl's output:\n{output}")


async def test_listing_videos_with_a_filter_and_a_second_page(
    videogen_server: RunningServer, tmp_path: Path
) -> None:
    env = recipe_env(tmp_path, ADDR=videogen_server.address)
    [block] = blocks(LIST_SECTION)
    assert block.startswith("ADDR=${ADDR:-127.0.0.1:50051}\n")
    code, out = await run_sh(block, env, tmp_path)
    assert code == 0, out
    listed = (await videogen_server.stub.List(video_service_pb2.ListRequest())).videos
    assert [v.prompt for v in listed] == ["a green kite", "a blue kite", "a red kite"]
    first_page, second_page = out.split("{", 1)
    # The first page as the recipe prints it: id, status, prompt, newest first.
    rows = [line.split(" ", 2) for line in first_page.splitlines()]
    assert [(r[0], r[2]) for r in rows] == [(listed[0].id, "a green kite"), (listed[1].id, "a blue kite")]
    assert all(r[1].startswith("VIDEO_STATUS_") for r in rows)
    # The second page: the oldest one, and no next_page_token (the last page).
    page = json.loads("{" + second_page)
    assert [v["id"] for v in page["videos"]] == [listed[2].id]
    assert "next_page_token" not in page
    assert_wrote_only_out(tmp_path)


# -- uploads (issue 12) -----------------------------------------------------------------------------------

UPLOAD_SECTION = "### Uploading a file"


async def test_the_upload_recipe(videogen_server: RunningServer, tmp_path: Path) -> None:
    from videogen_server.simulator.media import OutputMedia

    [block] = blocks(UPLOAD_SECTION)
    assert block.startswith("ADDR=${ADDR:-127.0.0.1:50051}\n")
    clip = tmp_path / "clip.mp4"
    await asyncio.to_thread(clip.write_bytes, OutputMedia("readme", 0, 600_000).read(0, 600_000))
    env = recipe_env(tmp_path, ADDR=videogen_server.address, CLIP=str(clip))
    code, out = await run_sh(block, env, tmp_path)
    assert code == 0, out
    match = re.search(r"^uploaded as (runway://\S+)$", out, flags=re.M)
    assert match, out
    assert videogen_server.simulator.uploads.resolve(match.group(1)) is not None
    assert out.count("COMPLETED") >= 2, out
    assert videogen_server.simulator.uploads.counts.stored == 2
    assert_wrote_only_out(tmp_path)


# -- Remix (issue 12) ---------------------------------------------------------------------------------------

REMIX_SECTION = "### Remixing a video"


async def test_the_remix_recipe(videogen_server: RunningServer, tmp_path: Path) -> None:
    """Generate, wait, Remix with a request_id, and watch the remix complete as a video-to-video video whose
    source_video_id is the first one."""
    (block,) = blocks(REMIX_SECTION)
    assert block.startswith("ADDR=${ADDR:-127.0.0.1:50051}\n")
    env = recipe_env(tmp_path, ADDR=videogen_server.address)
    code, out = await run_sh(block, env, tmp_path)
    assert code == 0, out
    match = re.search(rf"^remix ({UUID}) of ({UUID})$", out, flags=re.M)
    assert match, out
    remix_id, source_id = match.groups()
    assert [line.strip() for line in out.strip().splitlines()[-3:]] == [
        '"status": "VIDEO_STATUS_COMPLETED",',
        '"mode": "GENERATION_MODE_VIDEO_TO_VIDEO",',
        f'"source_video_id": "{source_id}"',
    ], out
    remix = (await videogen_server.stub.Get(video_service_pb2.GetRequest(id=remix_id))).video
    assert remix.model == "aleph2" and remix.request_id == f"snow-{source_id}"
    assert_wrote_only_out(tmp_path)


async def test_the_cli_remixes_and_downloads(videogen_server: RunningServer, tmp_path: Path) -> None:
    """`videogen remix ID --prompt ... --wait --output FILE`, as the README's sentence shows it."""
    env = recipe_env(tmp_path, ADDR=videogen_server.address)
    block = (
        'V=".venv/bin/videogen --target $ADDR"\n'
        'ID=$($V --json generate --model gen4.5 --prompt "a paper boat" --seconds 5 --wait | tail -1 \\\n'
        "      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')\n"
        '$V remix "$ID" --prompt "make it snow" --wait --output "$OUT/snow.mp4"\n'
        '$V --json remix "$ID" --prompt "make it snow" --index 1 || echo "exit $?"\n'
    )
    (tmp_path / "out").mkdir()
    code, out = await run_sh(block, env, tmp_path)
    assert code == 0, out
    assert "remix of:" in out, out  # the new video's view names its source
    assert (tmp_path / "out" / "snow.mp4").read_bytes()[4:8] == b"ftyp"
    assert "index" in out.split("remix of:")[-1] and "exit " in out, out  # no output 1: refused
    assert_wrote_only_out(tmp_path)
