r"""RunPod's official REST v2 OpenAPI document (openapi-v2.json, a verbatim copy) and JSON Schema checks against it.

Request bodies are validated with the spec's own schemas (a violation is a 422 listing every error); the tests use
`validate` the same way on responses. `pattern` is matched with ECMA-262 semantics (the `regress` engine, unicode
mode), as JSON Schema and RunPod's servers mean it: Python's `re` differs (`$` also matches before a final newline,
`\s` and `\d` cover other characters), so e.g. an SSH key line ending in a newline would pass here and fail there.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).with_name("openapi-v2.json")


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@cache
def _ecma(pattern: str):
    import regress

    return regress.Regex(pattern, "u")


def _ecma_pattern(validator, pattern: str, instance: Any, schema: dict[str, Any]):
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and _ecma(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _validator(schema_ref: str):
    from jsonschema import Draft202012Validator, validators

    ecma = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": spec()["components"],
        "$ref": schema_ref,
    }
    return ecma(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def param_errors(method: str, path: str, name: str, value: Any) -> list[str]:
    """Violations of the schema the spec gives query parameter `name` of `method path` (empty when valid)."""
    from jsonschema import Draft202012Validator

    for param in spec()["paths"][path][method.lower()].get("parameters", []):
        if "$ref" in param:
            param = spec()["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
        if param.get("name") == name:
            root = {"components": spec()["components"], **param["schema"]}
            return [e.message for e in Draft202012Validator(root).iter_errors(value)]
    return []


def schema_ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def errors(schema_name_or_ref: str, instance: Any) -> list[str]:
    """Every violation of the schema by `instance`, as `$.path: message` lines (empty when valid)."""
    ref = schema_name_or_ref if schema_name_or_ref.startswith("#") else schema_ref(schema_name_or_ref)
    found = []
    for err in sorted(_validator(ref).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        found.append(f"{where}: {err.message}")
    return found


def response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    """The JSON schema the spec gives for `method path` answering `status` (None when it has no body)."""
    op = spec()["paths"][path][method.lower()]
    responses = op["responses"]
    resp = responses.get(str(status)) or responses.get("default")
    if resp is None:
        raise KeyError(f"{method} {path} has no {status} response in the spec")
    if "$ref" in resp:
        resp = spec()["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
    content = resp.get("content")
    if not content:
        return None
    media = content.get("application/json") or content.get("application/problem+json")
    return media["schema"]


def validate_response(method: str, path: str, status: int, body: Any) -> list[str]:
    schema = response_schema(method, path, status)
    if schema is None:
        return [] if body in (None, b"", "") else [f"{method} {path} {status} must have no body"]
    ref = schema.get("$ref")
    if ref is None:
        raise ValueError(f"unexpected inline schema for {method} {path} {status}")
    return errors(ref, body)


def warm() -> None:
    """Build the validators used on requests (done in a thread after the server answers)."""
    for name in ("CreatePodRequest", "UpdatePodRequest", "PodActionRequest", "CreateNetworkVolumeRequest",
                 "UpdateNetworkVolumeRequest", "CreateTemplateRequest", "UpdateTemplateRequest",
                 "UpdateSshKeysRequest"):
        errors(name, {})
