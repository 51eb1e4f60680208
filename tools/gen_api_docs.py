#!/usr/bin/env python3
"""Generates docs/api.md, the API reference, from the comments in protos/videogen/v1/*.proto.

The protos are compiled by protoc (grpc_tools) into a FileDescriptorSet with source info, so comments are
read from protoc's own parse, never with regular expressions over the text:

    .venv/bin/python tools/gen_api_docs.py            # writes docs/api.md  (make docs)
    .venv/bin/python tools/gen_api_docs.py --check    # exit 1 if docs/api.md is stale  (make docs-check)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.api import field_behavior_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
INCLUDES = (REPO / "protos", REPO / "third_party")
PACKAGE = "videogen.v1"
OUTPUT = REPO / "docs" / "api.md"

# Field numbers of the descriptor.proto paths used by SourceCodeInfo.Location.path.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_INT64: "int64",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_INT32: "int32",
    _F.TYPE_FIXED64: "fixed64",
    _F.TYPE_FIXED32: "fixed32",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "string",
    _F.TYPE_BYTES: "bytes",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_SFIXED32: "sfixed32",
    _F.TYPE_SFIXED64: "sfixed64",
    _F.TYPE_SINT32: "sint32",
    _F.TYPE_SINT64: "sint64",
}


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "videogen" / "v1").glob("*.proto"))


def build_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Compiles the protos with protoc (grpc_tools, which adds the google/protobuf includes itself)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.binpb"
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *(f"-I{d}" for d in INCLUDES),
            *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
        ]
        subprocess.run(cmd, check=True, cwd=REPO)
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def own_files(fds: descriptor_pb2.FileDescriptorSet) -> list[descriptor_pb2.FileDescriptorProto]:
    return sorted((f for f in fds.file if f.package == PACKAGE), key=lambda f: f.name)


def field_behaviors(field: descriptor_pb2.FieldDescriptorProto) -> list[str]:
    """The field's google.api.field_behavior values, e.g. ["REQUIRED"]."""
    values = field.options.Extensions[field_behavior_pb2.field_behavior]
    return [field_behavior_pb2.FieldBehavior.Name(v) for v in values]


@dataclass(frozen=True)
class Message:
    full_name: str
    proto: descriptor_pb2.DescriptorProto
    path: tuple[int, ...]
    file: descriptor_pb2.FileDescriptorProto


@dataclass(frozen=True)
class Enum:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    path: tuple[int, ...]
    file: descriptor_pb2.FileDescriptorProto


def walk_messages(
    file: descriptor_pb2.FileDescriptorProto,
) -> Iterator[Message]:
    def visit(msg: descriptor_pb2.DescriptorProto, prefix: str, path: tuple[int, ...]) -> Iterator[Message]:
        name = f"{prefix}.{msg.name}"
        yield Message(name, msg, path, file)
        for i, nested in enumerate(msg.nested_type):
            yield from visit(nested, name, (*path, _MESSAGE_NESTED, i))

    for i, msg in enumerate(file.message_type):
        yield from visit(msg, file.package, (_FILE_MESSAGE, i))


def walk_enums(file: descriptor_pb2.FileDescriptorProto) -> Iterator[Enum]:
    for i, enum in enumerate(file.enum_type):
        yield Enum(f"{file.package}.{enum.name}", enum, (_FILE_ENUM, i), file)
    for message in walk_messages(file):
        for i, enum in enumerate(message.proto.enum_type):
            yield Enum(f"{message.full_name}.{enum.name}", enum, (*message.path, _MESSAGE_ENUM, i), file)


class Comments:
    """Leading comments of one file, by descriptor path."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self._by_path = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}

    def get(self, path: tuple[int, ...]) -> str:
        raw = self._by_path.get(path, "")
        lines = [line[1:] if line.startswith(" ") else line for line in raw.strip("\n").split("\n")]
        return "\n".join(line.rstrip() for line in lines).strip()


def _anchor(full_name: str) -> str:
    return full_name.removeprefix(f"{PACKAGE}.").replace(".", "").lower()


def _type_ref(type_name: str) -> str:
    name = type_name.lstrip(".")
    if name.startswith(f"{PACKAGE}."):
        return f"[`{name.removeprefix(PACKAGE + '.')}`](#{_anchor(name)})"
    return f"`{name}`"


def field_type(field: descriptor_pb2.FieldDescriptorProto, maps: dict[str, Message]) -> str:
    if field.type in (_F.TYPE_MESSAGE, _F.TYPE_ENUM):
        entry = maps.get(field.type_name.lstrip("."))
        if entry is not None:
            key, value = entry.proto.field
            return f"map<{field_type(key, maps)}, {field_type(value, maps)}>"
        base = _type_ref(field.type_name)
    else:
        base = f"`{_SCALARS[field.type]}`"
    if field.label == _F.LABEL_REPEATED:
        return f"repeated {base}"
    if field.proto3_optional:
        return f"optional {base}"
    return base


def _cell(text: str) -> str:
    """A comment as one table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def render(fds: descriptor_pb2.FileDescriptorSet) -> str:
    files = own_files(fds)
    sources = ", ".join(f"`protos/{f.name}`" for f in files)
    out: list[str] = [
        f"# `{PACKAGE}` API reference",
        "",
        f"<!-- Generated by `make docs` (tools/gen_api_docs.py) from {sources}. Do not edit by hand: "
        "edit the proto comments and run `make docs`. -->",
        "",
        "Field behaviors follow [google.api.field_behavior](https://google.aip.dev/203): `REQUIRED` fields "
        "must be set, `OPTIONAL` ones may be, `OUTPUT_ONLY` ones are set by the server only.",
        "",
    ]
    messages = [m for f in files for m in walk_messages(f)]
    maps = {m.full_name: m for m in messages if m.proto.options.map_entry}
    enums = [e for f in files for e in walk_enums(f)]

    out += ["## Services", ""]
    for file in files:
        comments = Comments(file)
        for s_index, service in enumerate(file.service):
            s_path = (_FILE_SERVICE, s_index)
            out += [f"### {service.name}", "", comments.get(s_path), ""]
            out += ["| RPC | request | response |", "| --- | --- | --- |"]
            for method in service.method:
                request = _type_ref(method.input_type)
                response = _type_ref(method.output_type)
                if method.client_streaming:
                    request = f"stream {request}"
                if method.server_streaming:
                    response = f"stream {response}"
                link = f"[{method.name}](#{service.name.lower()}{method.name.lower()})"
                out.append(f"| {link} | {request} | {response} |")
            out.append("")
            for m_index, method in enumerate(service.method):
                out += [f"#### {service.name}.{method.name}", ""]
                stream_in = "stream " if method.client_streaming else ""
                stream_out = "stream " if method.server_streaming else ""
                signature = (
                    f"rpc {method.name}({stream_in}{method.input_type.lstrip('.')}) "
                    f"returns ({stream_out}{method.output_type.lstrip('.')})"
                )
                out += [f"`{signature}`", "", comments.get((*s_path, _SERVICE_METHOD, m_index)), ""]

    out += ["## Messages", ""]
    for message in sorted((m for m in messages if not m.proto.options.map_entry), key=lambda m: m.full_name):
        comments = Comments(message.file)
        title = message.full_name.removeprefix(f"{PACKAGE}.")
        out += [f"### {title}", "", comments.get(message.path), ""]
        if not message.proto.field:
            out += ["(no fields)", ""]
            continue
        out += ["| field | type | number | behavior | description |", "| --- | --- | --- | --- | --- |"]
        for f_index, field in enumerate(message.proto.field):
            behavior = ", ".join(field_behaviors(field)) or "-"
            description = _cell(comments.get((*message.path, _MESSAGE_FIELD, f_index)))
            kind = field_type(field, maps)
            out.append(f"| `{field.name}` | {kind} | {field.number} | {behavior} | {description} |")
        out.append("")

    out += ["## Enums", ""]
    for enum in sorted(enums, key=lambda e: e.full_name):
        comments = Comments(enum.file)
        out += [f"### {enum.full_name.removeprefix(f'{PACKAGE}.')}", "", comments.get(enum.path), ""]
        out += ["| name | number | description |", "| --- | --- | --- |"]
        for v_index, value in enumerate(enum.proto.value):
            description = _cell(comments.get((*enum.path, _ENUM_VALUE, v_index)))
            out.append(f"| `{value.name}` | {value.number} | {description} |")
        out.append("")

    text = "\n".join(out)
    while "\n\n\n" in text:  # an empty comment leaves a blank line behind
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT})")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render(build_descriptor_set())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run `make docs` and commit it", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
