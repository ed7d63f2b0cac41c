"""llamafleet.command.engine_output on output shaped as the engine prints it (from `llamafleet up
local` runs whose dynamic providers failed): tracebacks become their error line, the rest is
untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafleet.command.engine_output import EngineOutput

FRAMES = """\
  File "/work/main/.venv/lib/python3.11/site-packages/pulumi/dynamic/__main__.py", line 84, in w
    return fn(self, request, context)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/work/main/components/store_bucket.py", line 49, in bucket_exists
    raise RuntimeError(f"checking bucket {bucket}: {describe_error(err)}") from None"""

# As streamed during `up` (two providers failing; the second a chained exception).
STREAMED = f"""\
Deployment initialization complete

error: Traceback (most recent call last):
{FRAMES}
RuntimeError: checking bucket llamafleet-models: Unable to locate credentials

error: Traceback (most recent call last):
  File "/work/main/modelsync/store.py", line 105, in s3_errors
    yield
botocore.exceptions.NoCredentialsError: Unable to locate credentials

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/work/main/modelsync/store.py", line 107, in s3_errors
    raise StoreError(f"{{action}}: {{describe_error(err)}}") from err
modelsync.errors.StoreError: listing s3://llamafleet-models/models: Unable to locate credentials

error: update failed
Resources:
    2 errored"""

# As a diagnostics summary lays them out: indented under the resource they belong to.
INDENTED = "\n".join(
    [
        "Diagnostics:",
        "  pulumi-python:dynamic/models:StoreBucket (local-store-bucket):",
        "    error: Traceback (most recent call last):",
        *("    " + line for line in FRAMES.splitlines()),
        "    RuntimeError: checking bucket llamafleet-models: Unable to locate credentials",
        "",
        "  pulumi:pulumi:Stack (llamafleet-local):",
        "    error: update failed",
    ]
)


def shown(text: str, log: Path | None = None) -> tuple[list[str], EngineOutput]:
    lines: list[str] = []
    output = EngineOutput(log, lines.append)
    for line in text.splitlines():
        output.stdout(line)
    output.close()
    return lines, output


def test_each_traceback_becomes_its_error_line(tmp_path: Path) -> None:
    lines, output = shown(STREAMED, tmp_path / "engine.log")
    assert lines == [
        "Deployment initialization complete",
        "",
        "error: RuntimeError: checking bucket llamafleet-models: Unable to locate credentials",
        "error: StoreError: listing s3://llamafleet-models/models: Unable to locate credentials",
        "error: update failed",
        "Resources:",
        "    2 errored",
    ]
    assert output.errors == [line for line in lines if line.startswith("error: ")]
    logged = (tmp_path / "engine.log").read_text()
    assert "NoCredentialsError" in logged and 'File "/work/main/modelsync/store.py"' in logged


def test_an_indented_traceback_ends_where_the_indentation_does() -> None:
    lines, _ = shown(INDENTED)
    assert lines == [
        "Diagnostics:",
        "  pulumi-python:dynamic/models:StoreBucket (local-store-bucket):",
        "    error: RuntimeError: checking bucket llamafleet-models: Unable to locate credentials",
        "  pulumi:pulumi:Stack (llamafleet-local):",
        "    error: update failed",
    ]


def test_output_that_ends_inside_a_traceback_still_shows_its_error(tmp_path: Path) -> None:
    cut = "error: Traceback (most recent call last):\n" + FRAMES
    lines, _ = shown(cut + "\nRuntimeError: checking bucket b: no route\n")
    assert lines == ["error: RuntimeError: checking bucket b: no route"]
    lines, _ = shown(cut, tmp_path / "engine.log")
    assert lines == [f"error: a dynamic provider failed (traceback in {tmp_path / 'engine.log'})"]


@pytest.mark.parametrize(
    "repeat", ["Exception calling application: ", "an unhandled error occurred: "]
)
def test_an_error_the_engine_repeats_is_shown_once(repeat: str) -> None:
    """grpc's form (the failed call ends the program) and the engine's (the program returns
    the error, as it does with a resource transform registered)."""
    message = "stacks/Pulumi.e2e.yaml: llamafleet:models.small.digest: the stack pins sha256:aa"
    lines, output = shown(f"    error: {message}\n    error: {repeat}{message}\n")
    assert lines == [f"    error: {message}"]
    assert output.errors == [f"error: {message}"]


def test_the_log_keeps_earlier_runs(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    shown("first run\n", log)
    shown("second run\n", log)
    text = log.read_text()
    assert "first run" in text and "second run" in text  # a refused run truncates nothing
