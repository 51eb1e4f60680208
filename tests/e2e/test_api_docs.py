"""The contract as a product: every field of videogen.v1 carries a google.api.field_behavior and a comment,
and docs/api.md is what tools/gen_api_docs.py generates from the protos right now (`make docs`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_docs", REPO / "tools" / "gen_api_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


gen_api_docs = _load_tool()


@pytest.fixture(scope="module")
def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    fds: descriptor_pb2.FileDescriptorSet = gen_api_docs.build_descriptor_set()
    return fds


def test_docs_api_md_is_up_to_date(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    current = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert current == gen_api_docs.render(descriptor_set), "docs/api.md is stale: run `make docs`"


def test_every_field_has_a_field_behavior(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    fields = [
        (message.full_name, field)
        for file in gen_api_docs.own_files(descriptor_set)
        for message in gen_api_docs.walk_messages(file)
        for field in message.proto.field
    ]
    assert len(fields) > 40  # the walk really saw the messages
    missing = [f"{name}.{field.name}" for name, field in fields if not gen_api_docs.field_behaviors(field)]
    assert not missing, f"fields without google.api.field_behavior: {missing}"
    behaviors = {b for _, field in fields for b in gen_api_docs.field_behaviors(field)}
    assert behaviors == {"REQUIRED", "OPTIONAL", "OUTPUT_ONLY"}


def test_every_element_is_documented(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    undocumented: list[str] = []
    for file in gen_api_docs.own_files(descriptor_set):
        comments = gen_api_docs.Comments(file)
        for message in gen_api_docs.walk_messages(file):
            if not comments.get(message.path):
                undocumented.append(message.full_name)
            for i, field in enumerate(message.proto.field):
                if not comments.get((*message.path, 2, i)):
                    undocumented.append(f"{message.full_name}.{field.name}")
        for enum in gen_api_docs.walk_enums(file):
            if not comments.get(enum.path):
                undocumented.append(enum.full_name)
            for i, value in enumerate(enum.proto.value):
                if not comments.get((*enum.path, 2, i)):
                    undocumented.append(value.name)
        for s, service in enumerate(file.service):
            for m, method in enumerate(service.method):
                if not comments.get((6, s, 2, m)):
                    undocumented.append(f"{service.name}.{method.name}")
    assert not undocumented, f"proto elements without a comment: {undocumented}"


def test_the_reference_carries_comments_types_and_behaviors(
    descriptor_set: descriptor_pb2.FileDescriptorSet,
) -> None:
    text = gen_api_docs.render(descriptor_set)
    assert "#### VideoService.WatchStatus" in text
    assert "returns (stream videogen.v1.WatchStatusResponse)" in text
    assert (
        "| `references` | repeated [`MediaReference`](#mediareference) | 9 | OPTIONAL | Video references,"
        in text
    )
    assert "| `model` | `string` | 1 | REQUIRED | The Runway model id" in text
    assert "| `cost_credits` | optional `double` | 16 | OUTPUT_ONLY |" in text
    assert "| `VIDEO_STATUS_COMPLETED` | 3 | Finished;" in text
