"""Prompt validation with ComfyUI's rules, error types and error shapes (``execution.py``).

Only outputs that fail are dropped: when at least one output node validates
the prompt is accepted and the failures are reported in ``node_errors``. Widget
values are coerced in place (``"42"`` → 42 for an INT), as the real server does.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from artcritic.sim.comfy_nodes import InputSpec, NodeSpec

Error = dict[str, Any]
Validated = dict[str, tuple[bool, list[Error], str]]


@dataclass
class Validation:
    """Outcome of validate_prompt: ``error`` is set when the prompt is refused outright."""

    ok: bool
    error: Error | None
    good_outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)


def error_make(kind: str, message: str, details: str = "", **extra: Any) -> Error:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def prompt_id_valid(value: object) -> bool:
    """A canonical lowercase hyphenated UUID string, as the newest server requires."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _is_link(value: object) -> bool:
    return isinstance(value, list)


def _convert(spec: InputSpec, value: Any) -> Any:
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if spec.kind == "INT":
        return int(value)
    if spec.kind == "FLOAT":
        return float(value)
    if spec.kind == "STRING":
        return str(value)
    if spec.kind == "BOOLEAN":
        return bool(value)
    return value


def _check_widget(spec: InputSpec, name: str, val: Any) -> Error | None:
    extra = spec.extra
    info = spec.config()
    if "min" in extra and val < extra["min"]:
        return error_make(
            "value_smaller_than_min",
            f"Value {val} smaller than min of {extra['min']}",
            name,
            input_name=name,
            input_config=info,
            received_value=val,
        )
    if "max" in extra and val > extra["max"]:
        return error_make(
            "value_bigger_than_max",
            f"Value {val} bigger than max of {extra['max']}",
            name,
            input_name=name,
            input_config=info,
            received_value=val,
        )
    if isinstance(spec.kind, tuple) and val not in spec.kind:
        options = list(spec.kind)
        # The real server does not echo gigantic lists (e.g. thousands of model files).
        long_list = len(options) > 20
        list_info = f"(list of length {len(options)})" if long_list else str(options)
        return error_make(
            "value_not_in_list",
            "Value not in list",
            f"{name}: {val!r} not in {list_info}",
            input_name=name,
            input_config=None if long_list else info,
            received_value=val,
        )
    return None


def _cycle(
    prompt: Mapping[str, Any], visiting: list[str], unique_id: str, validated: Validated
) -> tuple[bool, list[Error], str]:
    path = [*visiting[visiting.index(unique_id) :], unique_id]
    nodes = list(dict.fromkeys(path))
    text = " -> ".join(f"{n} ({prompt[n]['class_type']})" for n in path)
    for node_id in nodes:
        validated[node_id] = (
            False,
            [
                error_make(
                    "dependency_cycle",
                    "Dependency cycle detected",
                    text,
                    node_id=node_id,
                    cycle_nodes=nodes,
                )
            ],
            node_id,
        )
    return validated[unique_id]


def validate_inputs(
    prompt: dict[str, Any],
    unique_id: str,
    specs: Mapping[str, NodeSpec],
    validated: Validated,
    visiting: list[str] | None = None,
) -> tuple[bool, list[Error], str]:
    """Validate one node and, recursively, everything it links to."""
    visiting = visiting if visiting is not None else []
    if unique_id in validated:
        return validated[unique_id]
    if unique_id in visiting:
        return _cycle(prompt, visiting, unique_id, validated)
    inputs = prompt[unique_id]["inputs"]
    spec = specs[prompt[unique_id]["class_type"]]
    errors: list[Error] = []
    valid = True
    for ispec in spec.inputs:
        x = ispec.name
        if x not in inputs:
            if ispec.required:
                errors.append(
                    error_make(
                        "required_input_missing", "Required input is missing", x, input_name=x
                    )
                )
            continue
        val = inputs[x]
        if _is_link(val):
            link_ok, link_errors = _validate_link(
                prompt,
                unique_id,
                ispec=ispec,
                val=val,
                specs=specs,
                validated=validated,
                visiting=visiting,
            )
            errors += link_errors
            valid = valid and link_ok
            continue
        try:
            val = _convert(ispec, val)
            inputs[x] = val
        except Exception as exc:
            errors.append(
                error_make(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {ispec.kind} value",
                    f"{x}, {val}, {exc}",
                    input_name=x,
                    input_config=ispec.config(),
                    received_value=val,
                    exception_message=str(exc),
                )
            )
            continue
        problem = _check_widget(ispec, x, val)
        if problem is not None:
            errors.append(problem)
    previous = validated.get(unique_id, (True, [], unique_id))
    result = (
        previous[0] and valid and not errors,
        previous[1] + [e for e in errors if e not in previous[1]],
        unique_id,
    )
    validated[unique_id] = result
    return result


def _validate_link(
    prompt: dict[str, Any],
    unique_id: str,
    *,
    ispec: InputSpec,
    val: list[Any],
    specs: Mapping[str, NodeSpec],
    validated: Validated,
    visiting: list[str],
) -> tuple[bool, list[Error]]:
    x = ispec.name
    if len(val) != 2:
        return True, [
            error_make(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                x,
                input_name=x,
                input_config=ispec.config(),
                received_value=val,
            )
        ]
    # A link to a node that does not exist raises here, as in the real validator, and
    # surfaces as exception_during_validation on the output.
    o_id = val[0]
    received = specs[prompt[o_id]["class_type"]].outputs[val[1]]
    if received != ispec.kind:
        return True, [
            error_make(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                f"{x}, received_type({received}) mismatch input_type({ispec.kind})",
                input_name=x,
                input_config=ispec.config(),
                received_type=received,
                linked_node=val,
            )
        ]
    visiting.append(unique_id)
    try:
        upstream = validate_inputs(prompt, o_id, specs, validated, visiting)
    except Exception as exc:
        validated[o_id] = (
            False,
            [
                error_make(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    str(exc),
                    input_name=x,
                    input_config=ispec.config(),
                    exception_message=str(exc),
                    exception_type=_type_name(exc),
                    traceback=traceback.format_tb(exc.__traceback__),
                    linked_node=val,
                )
            ],
            o_id,
        )
        return False, []
    finally:
        visiting.pop()
    return upstream[0], []


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _node_types_legacy(prompt: dict[str, Any], specs: Mapping[str, NodeSpec]) -> Error | None:
    """ComfyUI 0.3.64's execution.validate_prompt: invalid_prompt, extra_info empty."""
    for x, node in prompt.items():
        if "class_type" not in node:
            return error_make(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{x}'",
            )
        if node["class_type"] not in specs:
            return error_make(
                "invalid_prompt",
                f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{x}'",
            )
    return None


def _node_types(prompt: dict[str, Any], specs: Mapping[str, NodeSpec]) -> Error | None:
    for x, node in prompt.items():
        meta = node.get("_meta") if isinstance(node.get("_meta"), dict) else {}
        if "class_type" not in node:
            title = meta.get("title")
            return error_make(
                "missing_node_type",
                f"Node '{title or f'ID #{x}'}' has no class_type. The workflow may be "
                "corrupted or a custom node is missing.",
                f"Node ID '#{x}'",
                node_id=x,
                class_type=None,
                node_title=title,
            )
        if node["class_type"] not in specs:
            title = meta.get("title", node["class_type"])
            return error_make(
                "missing_node_type",
                f"Node '{title}' not found. The custom node may not be installed.",
                f"Node ID '#{x}'",
                node_id=x,
                class_type=node["class_type"],
                node_title=title,
            )
    return None


def prompt_validate(
    prompt: dict[str, Any],
    specs: Mapping[str, NodeSpec],
    partial: list[str] | None = None,
    *,
    legacy_unknown_node: bool = False,
) -> Validation:
    """Validate a whole API-format prompt the way ``execution.validate_prompt`` does.

    ``legacy_unknown_node``: report an unknown class as ComfyUI 0.3.64 did (invalid_prompt
    "Cannot execute because node X does not exist."), not as missing_node_type.
    """
    missing = (_node_types_legacy if legacy_unknown_node else _node_types)(prompt, specs)
    if missing is not None:
        return Validation(False, missing, [], {})
    outputs = [
        x
        for x, node in prompt.items()
        if specs[node["class_type"]].output_node and (partial is None or x in partial)
    ]
    if not outputs:
        return Validation(False, error_make("prompt_no_outputs", "Prompt has no outputs"), [], {})
    good: list[str] = []
    failures: list[tuple[str, list[Error]]] = []
    node_errors: dict[str, Any] = {}
    validated: Validated = {}
    for o in outputs:
        try:
            ok, reasons, _ = validate_inputs(prompt, o, specs, validated)
        except Exception as exc:
            ok = False
            reasons = [
                error_make(
                    "exception_during_validation",
                    "Exception when validating node",
                    str(exc),
                    exception_type=_type_name(exc),
                    traceback=traceback.format_tb(exc.__traceback__),
                )
            ]
            validated[o] = (False, reasons, o)
        if ok:
            good.append(o)
            continue
        failures.append((o, reasons))
        for node_id, (node_ok, node_reasons, _) in validated.items():
            # Downstream nodes of a broken one are invalid too but carry no reasons: skip them.
            if not node_ok and node_reasons:
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(o)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failures for e in errs)
        error = error_make(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return Validation(False, error, [], node_errors)
    return Validation(True, None, good, node_errors)
