"""`render-template`: a planrt task type written in Python (componentize-py).

Reads a template file under the granted `/home`, substitutes `$name` placeholders with
`string.Template`, and writes the result to another file under `/home` — atomically, and
only when the content differs, so a repeated attempt is a no-op.
"""

import json
import os
import string

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.planrt_task_types import (
    DirMode,
    DirNeed,
    Info,
    Needs,
    TaskError_InvalidParams,
    TaskError_Permanent,
    TaskError_Transient,
)

ROOT = "/home"

PARAMS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "render-template params",
    "type": "object",
    "properties": {
        "template": {
            "type": "string",
            "minLength": 1,
            "description": "Template file, a relative path under /home ($name placeholders).",
        },
        "output": {
            "type": "string",
            "minLength": 1,
            "description": "File to write, a relative path under /home.",
        },
        "vars": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Values for the placeholders.",
        },
    },
    "required": ["template", "output"],
    "additionalProperties": False,
}


class Invalid(Exception):
    """Params that do not fit this task type."""


def check_relative(field, path):
    """A relative path of plain components: no leading `/`, no `.` or `..`, no empty part."""
    if not isinstance(path, str) or path == "":
        raise Invalid(f"{field} must be a non-empty string")
    if path.startswith("/"):
        raise Invalid(f"{field} {path!r} must be relative to {ROOT}, not absolute")
    if "\\" in path or "\0" in path:
        raise Invalid(f"{field} {path!r} must not contain a backslash or NUL")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise Invalid(f"{field} {path!r} must be plain path components (no '', '.' or '..')")


def parse(text):
    """Parse and check params; the host has already checked them against PARAMS_SCHEMA,
    but a plugin must not rely on that for its own safety."""
    try:
        params = json.loads(text)
    except ValueError as e:
        raise Invalid(f"params are not JSON: {e}")
    if not isinstance(params, dict):
        raise Invalid("params must be an object")
    unknown = sorted(set(params) - set(PARAMS_SCHEMA["properties"]))
    if unknown:
        raise Invalid(f"unknown params: {', '.join(unknown)}")
    if "template" not in params or "output" not in params:
        raise Invalid("params need both 'template' and 'output'")
    check_relative("template", params["template"])
    check_relative("output", params["output"])
    variables = params.get("vars", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise Invalid("vars must be an object of strings")
    return params["template"], params["output"], variables


def write_atomically(path, data, context):
    """Temp file with a unique name in the same directory, fsync, rename, fsync the dir."""
    directory = os.path.dirname(path)
    tmp = os.path.join(
        directory,
        f".{os.path.basename(path)}.{context.task_id[:8]}-{context.attempt}-{os.urandom(6).hex()}.tmp",
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Info:
        return Info(
            task_type="render-template",
            version="0.1.0",
            description="Render a $name template file under /home into another file (Python)",
            params_schema=json.dumps(PARAMS_SCHEMA),
            needs=Needs(dirs=[DirNeed(guest_path=ROOT, mode=DirMode.RW)], network=False),
            default_timeout_ms=60_000,
            default_memory_limit=None,
        )

    def validate(self, params: str) -> None:
        try:
            parse(params)
        except Invalid as e:
            raise Err(str(e))

    def run(self, context, params: str) -> str:
        try:
            template_rel, output_rel, variables = parse(params)
        except Invalid as e:
            raise Err(TaskError_InvalidParams(str(e)))
        template_path = f"{ROOT}/{template_rel}"
        output_path = f"{ROOT}/{output_rel}"

        try:
            with open(template_path, "rb") as f:
                raw = f.read()
        except (FileNotFoundError, NotADirectoryError):
            raise Err(TaskError_Permanent(f"template {template_rel!r} not found under {ROOT}"))
        except (IsADirectoryError, PermissionError) as e:
            raise Err(TaskError_Permanent(f"cannot read template {template_rel!r}: {e}"))
        except OSError as e:
            raise Err(TaskError_Transient(f"reading template {template_rel!r}: {e}"))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Err(TaskError_Permanent(f"template {template_rel!r} is not UTF-8: {e}"))

        try:
            rendered = string.Template(text).substitute(variables)
        except KeyError as e:
            raise Err(TaskError_InvalidParams(
                f"template {template_rel!r} uses ${e.args[0]}, which vars does not define"))
        except ValueError as e:
            raise Err(TaskError_Permanent(f"template {template_rel!r} is malformed: {e}"))
        data = rendered.encode("utf-8")

        try:
            with open(output_path, "rb") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        except (IsADirectoryError, PermissionError) as e:
            raise Err(TaskError_Permanent(f"cannot read output {output_rel!r}: {e}"))
        except NotADirectoryError:
            raise Err(TaskError_Permanent(f"output {output_rel!r}: a parent is not a directory"))
        except OSError as e:
            raise Err(TaskError_Transient(f"reading output {output_rel!r}: {e}"))

        changed = current != data
        if changed:
            try:
                os.makedirs(os.path.dirname(output_path), exist_ok=True)
                write_atomically(output_path, data, context)
            except (FileExistsError, NotADirectoryError, PermissionError) as e:
                raise Err(TaskError_Permanent(f"cannot write output {output_rel!r}: {e}"))
            except OSError as e:
                raise Err(TaskError_Transient(f"writing output {output_rel!r}: {e}"))
        host.log(
            host.Level.INFO,
            f"rendered {template_rel} into {output_rel} ({len(data)} bytes, "
            + ("written" if changed else "unchanged") + ")",
        )
        return json.dumps({"output": output_rel, "changed": changed})
