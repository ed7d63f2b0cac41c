"""The command line: output contracts and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from support.reference_gguf import write_reference
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.cli import build_parser, main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_parser_has_the_five_subcommands() -> None:
    parser = build_parser()
    for command in ("inspect", "import-ollama", "sync", "fetch", "verify"):
        assert (
            parser.parse_args([command, "--help"] if False else _minimal(command)).command
            == command
        )


def _minimal(command: str) -> list[str]:
    return {
        "inspect": ["inspect", "f.gguf"],
        "import-ollama": ["import-ollama", "s3://b/p"],
        "sync": ["sync", "dir", "s3://b/p"],
        "fetch": [
            "fetch",
            "--store",
            "s3://b/p",
            "--digest",
            "sha256:" + "0" * 64,
            "--cache-dir",
            "c",
        ],
        "verify": ["verify", "s3://b/p"],
    }[command]


def test_inspect_json_is_pasteable_into_a_stack_file(
    gguf_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = gguf_file(spec=GgufSpec(metadata={"tokenizer.chat_template": "{{ messages }}"}))

    code, out, err = run(["inspect", "--json", str(model)], capsys)

    assert (code, err) == (0, "")
    document = json.loads(out)
    assert list(document) == ["sizeBytes", "gguf"]
    assert document["sizeBytes"] == model.stat().st_size
    assert document["gguf"]["architecture"] == "llama"


def test_inspect_digest_only_when_asked(
    gguf_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = gguf_file()

    code, out, _ = run(["inspect", "--json", "--digest", str(model)], capsys)

    assert code == 0
    document = json.loads(out)
    assert list(document) == ["digest", "sizeBytes", "gguf"]
    assert document["digest"] == f"sha256:{hashlib.sha256(model.read_bytes()).hexdigest()}"


def test_inspect_human_output_lists_fields(
    gguf_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["inspect", str(gguf_file())], capsys)

    assert code == 0
    assert "architecture: llama" in out.splitlines()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "{tmp}/missing.gguf"], "missing.gguf: cannot read"),
        (["inspect", "{tmp}/notgguf.txt"], "not a GGUF file"),
        (["sync", "{tmp}/nowhere", "s3://bucket/p"], "nowhere: no such file or folder"),
        (["sync", "{tmp}/empty", "s3://bucket/p"], "no *.gguf files"),
        (["sync", "{tmp}/models", "http://bucket/p"], "invalid store URL"),
        (["sync", "{tmp}/models", "s3://B_ad/p"], "invalid store URL"),
        (
            ["fetch", "--store", "s3://bucket/p", "--digest", "md5:abc", "--cache-dir", "{tmp}"],
            "invalid digest 'md5:abc'",
        ),
        (["verify"], "verify needs a STORE"),
        (["verify", "--file", "{tmp}/models/m.gguf"], "needs --digest or a STORE"),
        (["import-ollama", "s3://bucket/p", "--models-dir", "{tmp}/empty"], "not an Ollama store"),
        (["sync", "{tmp}/models", "s3://bucket/p", "--part-size", "1"], "must be at least 5"),
        (["sync"], "the following arguments are required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_gives_one_error_line(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notgguf.txt").write_text("hello, not a model\n" * 10)
    write_gguf(tmp_path / "models" / "m.gguf")

    code, out, err = run([arg.replace("{tmp}", str(tmp_path)) for arg in argv], capsys)

    assert code != 0
    assert out == ""
    assert err.count("\n") == 1, err
    assert "error: " in err and message in err
    assert "Traceback" not in err


def test_unreachable_endpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llamafleet.modelsync.store.RETRY_ATTEMPTS", 1)
    write_gguf(tmp_path / "models" / "m.gguf")
    argv = ["sync", str(tmp_path / "models"), "s3://bucket/p", "--endpoint-url"]
    argv += ["http://127.0.0.1:9", "--cache-dir", str(tmp_path / "hc")]

    code, _, err = run(argv, capsys)

    assert code == 1
    assert err.count("\n") == 1 and "Could not connect" in err


def test_console_entry_point_runs_as_module(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "m.gguf")
    completed = subprocess.run(
        [sys.executable, "-m", "llamafleet.modelsync", "inspect", "--json", str(model)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["gguf"]["blockCount"] == 4


def test_inspect_notes_a_missing_chat_template_on_stderr(
    gguf_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without tokenizer.chat_template llama-server formats chats as chatml, whatever the model."""
    code, out, err = run(["inspect", "--json", str(gguf_file())], capsys)

    assert code == 0 and json.loads(out)["gguf"]["architecture"] == "llama"
    assert err.count("\n") == 1 and "carries no chat template" in err and "chatTemplate" in err


@pytest.mark.parametrize(
    "case",
    [
        ({"split": (0, 2, 2)}, "shard 1 of 2 must be named <prefix>-00001-of-00002.gguf"),
        ({"tensors": ["token_embd.weight", "v.patch_embd.weight"]}, "holds a vision tower"),
    ],
    ids=["split-shard", "merged-vision"],
)
def test_sync_refuses_what_llama_server_would_not_load_and_writes_nothing(
    tmp_path: Path,
    endpoint: str,
    bucket: str,
    case: tuple[dict[str, object], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra, message = case
    (tmp_path / "models").mkdir()
    model = write_reference(tmp_path / "models" / "m.gguf", "gemma3", **extra)
    argv = ["sync", str(model), f"s3://{bucket}/p", "--endpoint-url", endpoint]
    argv += ["--cache-dir", str(tmp_path / "hc")]

    code, out, err = run(argv, capsys)

    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and message in err, err
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    assert not listing.get("Contents")
