"""GenerateSpec.fingerprint must give the digest of GenerateSpec.fingerprint_fields() (the definition, and
what stored records carry), although it builds the JSON without dataclasses.asdict."""

from __future__ import annotations

import hashlib
import json

import pytest
from videogen_server.domain.generation import GenerateSpec, MediaRef

fingerprint = GenerateSpec.fingerprint  # the method, called as fingerprint(spec)


def _by_definition(spec: GenerateSpec) -> str:
    canonical = json.dumps(spec.fingerprint_fields(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


SPECS = [
    GenerateSpec(model="gen4.5", prompt="a paper boat", seconds=5),
    GenerateSpec(
        model="gen4_aleph",
        prompt="é ü 漢",
        video_uri="https://example.com/in.mp4",
        references=(MediaRef("https://example.com/a.png", "hero"), MediaRef("https://example.com/b.png")),
        reference_images=(MediaRef("https://example.com/c.png", "bg"),),
        seed=3,
        audio=True,
        size="1280:720",
        public_figure_threshold="low",
        provider_options={"z": [1, 2.5, {"a": None, "b": [True]}], "a": {"y": "x"}},
    ),
    GenerateSpec(model="gen4_turbo", input_reference="data:image/png;base64," + "A" * 1000, audio=False),
]


@pytest.mark.parametrize("spec", SPECS)
def test_fingerprint_is_the_digest_of_fingerprint_fields(spec: GenerateSpec) -> None:
    assert fingerprint(spec) == _by_definition(spec)


def test_fingerprint_ignores_only_the_request_id() -> None:
    spec = SPECS[1]
    assert fingerprint(spec) == fingerprint(GenerateSpec(**{**spec.__dict__, "request_id": "r-1"}))
    assert fingerprint(spec) != fingerprint(GenerateSpec(**{**spec.__dict__, "seed": 4}))
    moved = (MediaRef("https://example.com/a.png", "other"), *spec.references[1:])
    assert fingerprint(spec) != fingerprint(GenerateSpec(**{**spec.__dict__, "references": moved}))
