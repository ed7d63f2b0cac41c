"""Why a model fetch failed: each reason from real botocore exception objects (built as botocore
raises them, and raised by real requests to dead and live S3 servers on loopback), the exit
status of each, the retry loop's waits, and the metrics exposition."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.session import get_session
from support.promql import exposition_names, samples

from llamafleet.command.engine import engine_bin_dir
from llamafleet.modelsync.cli import main
from llamafleet.modelsync.errors import DigestMismatchError, GgufError, SourceError, StoreError
from llamafleet.modelsync.failures import (
    FETCH_EXIT_STATUS,
    REASONS,
    FailureReason,
    describe_failure,
    failure_reason,
)
from llamafleet.modelsync.fetch import MismatchedObjects, fetch_model
from llamafleet.modelsync.fetch_metrics import (
    FAILURES,
    IN_PROGRESS,
    LAST_ATTEMPT_FAILED,
    FetchMetrics,
    serving_metrics,
)
from llamafleet.modelsync.fetch_retry import backoff_delays, fetch_until_done, jittered
from llamafleet.modelsync.store import RemoteStore, StoreLocation, s3_errors
from llamafleet.monitoring import metrics

URL = "http://store.example:9000/bucket/k"


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    """A ClientError as botocore builds it from an S3 error response."""
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


CASES: list[tuple[BaseException, FailureReason]] = [
    (EndpointConnectionError(endpoint_url=URL), "store_unreachable"),
    (ConnectTimeoutError(endpoint_url=URL), "store_unreachable"),
    (ReadTimeoutError(endpoint_url=URL), "store_unreachable"),
    (ConnectionClosedError(endpoint_url=URL), "store_unreachable"),
    (ProxyConnectionError(proxy_url="http://proxy:3128", error="refused"), "store_unreachable"),
    (ResponseStreamingError(error="Connection reset by peer"), "store_unreachable"),
    (IncompleteReadError(actual_bytes=10, expected_bytes=20), "store_unreachable"),
    (socket.gaierror(-2, "Name or service not known"), "store_unreachable"),
    (ConnectionResetError(104, "Connection reset by peer"), "store_unreachable"),
    (client_error("ServiceUnavailable", 503), "store_unreachable"),
    (client_error("BadGateway", 502), "store_unreachable"),
    (client_error("GatewayTimeout", 504), "store_unreachable"),
    (DigestMismatchError("content hashes to sha256:aa, not sha256:bb"), "digest_mismatch"),
    (client_error("NoSuchKey", 404), "not_found"),
    (client_error("404", 404, "HeadObject"), "not_found"),
    (client_error("NoSuchBucket", 404), "not_found"),
    (client_error("AccessDenied", 403), "access_denied"),
    (client_error("403", 403, "HeadObject"), "access_denied"),
    (client_error("InvalidAccessKeyId", 403), "access_denied"),
    (client_error("SignatureDoesNotMatch", 403), "access_denied"),
    (NoCredentialsError(), "access_denied"),
    (client_error("InternalError", 500), "other"),
    (client_error("InvalidRange", 416), "other"),
    (GgufError("not a GGUF file"), "other"),
    (SourceError("/models/sha256: cannot create cache folder: No space left on device"), "other"),
    (OSError(28, "No space left on device"), "other"),
]

# What `store.s3_errors` wraps in a StoreError.
BOTOCORE_CASES = [
    (err, reason) for err, reason in CASES if isinstance(err, ClientError | BotoCoreError)
]


def _case_id(value: object) -> str:
    return value if isinstance(value, str) else type(value).__name__


@pytest.mark.parametrize(("err", "reason"), CASES, ids=_case_id)
def test_each_failure_has_its_reason(err: BaseException, reason: FailureReason) -> None:
    assert failure_reason(err) == reason


@pytest.mark.parametrize(("err", "reason"), BOTOCORE_CASES, ids=_case_id)
def test_a_store_error_takes_the_reason_of_its_botocore_cause(
    err: BaseException, reason: FailureReason
) -> None:
    """modelsync wraps botocore's failures (`store.s3_errors`); the cause decides."""
    with pytest.raises(StoreError) as caught, s3_errors("reading s3://bucket/k"):
        raise err
    assert failure_reason(caught.value) == reason


def test_a_failure_raised_while_handling_another_takes_the_handled_ones_reason() -> None:
    try:
        try:
            raise ReadTimeoutError(endpoint_url=URL)
        except ReadTimeoutError:
            raise SourceError("gave up") from None
    except SourceError as err:
        assert failure_reason(err) == "other"  # `from None`: the context is suppressed
    try:
        try:
            raise ReadTimeoutError(endpoint_url=URL)
        except ReadTimeoutError:
            raise SourceError("gave up")  # noqa: B904 (the implicit context is the point)
    except SourceError as err:
        assert failure_reason(err) == "store_unreachable"


def test_each_reason_exits_with_its_own_status() -> None:
    assert set(FETCH_EXIT_STATUS) == set(REASONS)
    statuses = list(FETCH_EXIT_STATUS.values())
    assert len(set(statuses)) == len(statuses)
    assert FETCH_EXIT_STATUS["other"] == 1  # as every other command's error
    # 0 success, 2 usage, 3 import-ollama's partial import, 130 Ctrl-C are taken.
    assert not {0, 2, 3, 130} & set(statuses)


def test_the_message_names_the_reason() -> None:
    message = describe_failure(client_error("AccessDenied", 403))
    assert message == "access_denied: GetObject failed: AccessDenied: AccessDenied"


# --- raised by real requests -----------------------------------------------------------------


def dead_endpoint() -> str:
    """A loopback URL nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_dead_endpoint_is_store_unreachable(tmp_path: Path) -> None:
    store = RemoteStore.open("s3://bucket/fleet", dead_endpoint(), max_attempts=1)
    with pytest.raises(StoreError) as caught:
        fetch_model(store, "0" * 64, tmp_path / "cache")
    assert isinstance(caught.value.__cause__, EndpointConnectionError)
    assert failure_reason(caught.value) == "store_unreachable"


@pytest.mark.s3
def test_a_missing_object_or_bucket_is_not_found(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    for url in (f"s3://{bucket}/fleet", f"s3://no-{bucket}/fleet"):
        store = RemoteStore.open(url, moto_endpoint)
        with pytest.raises(StoreError) as caught:
            fetch_model(store, "0" * 64, tmp_path / "cache")
        assert failure_reason(caught.value) == "not_found", caught.value


@pytest.mark.s3
def test_a_wrong_object_is_digest_mismatch(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=bucket)
    hex_digest = hashlib.sha256(b"the model").hexdigest()
    store = RemoteStore.open(f"s3://{bucket}/fleet", moto_endpoint)
    client.put_object(Bucket=bucket, Key=store.location.object_key(hex_digest), Body=b"not it")
    with pytest.raises(DigestMismatchError) as caught:
        fetch_model(store, hex_digest, tmp_path / "cache")
    assert failure_reason(caught.value) == "digest_mismatch"


@pytest.mark.s3
def test_wrong_keys_are_access_denied(rclone_endpoint: str, tmp_path: Path) -> None:
    """rclone's S3 server checks the keys (moto accepts any)."""
    client = get_session().create_client(
        "s3",
        endpoint_url=rclone_endpoint,
        region_name="us-east-1",
        aws_access_key_id="not-the-key",
        aws_secret_access_key="not-the-secret",
    )
    store = RemoteStore(StoreLocation.parse("s3://bucket/fleet"), client)
    with pytest.raises(StoreError) as caught:
        fetch_model(store, "0" * 64, tmp_path / "cache")
    assert failure_reason(caught.value) == "access_denied", caught.value


def fetch_cli(
    url: str, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """`modelsync fetch` of a digest the store does not hold, in process: (status, stderr)."""
    argv = ["fetch", "--store", f"s3://{bucket}/fleet", "--digest", "sha256:" + "0" * 64]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--endpoint-url", url]
    code = main(argv)
    return code, capsys.readouterr().err


def test_fetch_from_a_dead_store_exits_4_naming_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llamafleet.modelsync.store.RETRY_ATTEMPTS", 1)

    code, err = fetch_cli(dead_endpoint(), "bucket", tmp_path, capsys)

    assert code == FETCH_EXIT_STATUS["store_unreachable"] == 4
    assert err.count("\n") == 1 and err.startswith("modelsync: error: store_unreachable: "), err


@pytest.mark.s3
def test_fetch_of_a_missing_object_exits_6_naming_the_reason(
    moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="exit-status")

    code, err = fetch_cli(moto_endpoint, "exit-status", tmp_path, capsys)

    assert code == FETCH_EXIT_STATUS["not_found"] == 6
    assert err.count("\n") == 1 and err.startswith("modelsync: error: not_found: "), err
    assert "no such object" in err


# --- the retry loop --------------------------------------------------------------------------


def test_waits_double_from_five_seconds_up_to_the_cap() -> None:
    def first(cap: float, n: int) -> list[float]:
        delays = backoff_delays(cap)
        return [next(delays) for _ in range(n)]

    assert first(300, 8) == [5, 10, 20, 40, 80, 160, 300, 300]
    assert first(10, 4) == [5, 10, 10, 10]
    assert first(3, 3) == [3, 3, 3]


def test_failures_are_counted_and_retried_until_the_fetch_succeeds() -> None:
    failures: list[BaseException] = [
        EndpointConnectionError(endpoint_url=URL),
        DigestMismatchError("content hashes to sha256:aa, not sha256:bb"),
        DigestMismatchError("content hashes to sha256:aa, not sha256:bb"),
    ]
    slept: list[float] = []
    told: list[tuple[str, float]] = []
    counters = FetchMetrics()

    def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "fetched"

    result = fetch_until_done(
        attempt,
        counters,
        10,
        lambda err, delay: told.append((type(err).__name__, delay)),
        sleep=slept.append,
        uniform=lambda: 1.0,
    )

    assert result == "fetched"
    assert slept == [5, 10, 10]  # a digest mismatch is never tried again at once
    assert told == [
        ("EndpointConnectionError", 5),
        ("DigestMismatchError", 10),
        ("DigestMismatchError", 10),
    ]
    assert counters.failures() == {
        "store_unreachable": 1,
        "digest_mismatch": 2,
        "not_found": 0,
        "access_denied": 0,
        "other": 0,
    }


def test_each_wait_is_jittered_between_its_half_and_itself() -> None:
    assert jittered(300, 0.0) == 150
    assert jittered(300, 1.0) == 300
    assert jittered(10, 0.5) == 7.5
    draws = iter([0.0, 0.5, 1.0])
    slept: list[float] = []
    failures = 3

    def attempt() -> str:
        nonlocal failures
        if failures:
            failures -= 1
            raise EndpointConnectionError(endpoint_url=URL)
        return "fetched"

    fetch_until_done(
        attempt,
        FetchMetrics(),
        300,
        lambda err, delay: None,
        sleep=slept.append,
        uniform=lambda: next(draws),
    )
    assert slept == [2.5, 7.5, 20]


def test_the_latest_failure_is_the_one_the_gauge_shows() -> None:
    counters = FetchMetrics()
    assert counters.last_failed() is None
    counters.record("store_unreachable")
    counters.record("digest_mismatch")
    assert counters.last_failed() == "digest_mismatch"
    gauge = {
        labels["reason"]: value
        for labels, value in samples(counters.exposition(), LAST_ATTEMPT_FAILED)
    }
    assert gauge == dict.fromkeys(REASONS, 0.0) | {"digest_mismatch": 1.0}


def test_without_a_cap_the_first_failure_is_counted_and_raised() -> None:
    counters = FetchMetrics()

    def attempt() -> None:
        raise client_error("NoSuchBucket", 404)

    with pytest.raises(ClientError):
        fetch_until_done(attempt, counters, None, lambda err, delay: None, sleep=lambda delay: None)
    assert counters.failures()["not_found"] == 1


def test_a_bug_is_neither_counted_nor_retried() -> None:
    counters = FetchMetrics()

    def attempt() -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        fetch_until_done(attempt, counters, 10, lambda err, delay: None, sleep=lambda delay: None)
    assert sum(counters.failures().values()) == 0


# --- the exposition --------------------------------------------------------------------------


def test_every_reason_is_exported_from_zero_with_the_gauge() -> None:
    counters = FetchMetrics()
    counters.record("store_unreachable")
    text = counters.exposition()
    assert {labels["reason"]: value for labels, value in samples(text, FAILURES)} == {
        "store_unreachable": 1,
        "digest_mismatch": 0,
        "not_found": 0,
        "access_denied": 0,
        "other": 0,
    }
    assert samples(text, IN_PROGRESS) == [({}, 1.0)]
    assert exposition_names(text) == metrics.EXPORTERS["model-fetcher"]


def test_the_exposition_passes_promtool_check_metrics() -> None:
    promtool = engine_bin_dir() / "promtool"
    if not promtool.is_file():
        pytest.skip(f"not built: {promtool}: run scripts/bootstrap-engine prometheus")
    counters = FetchMetrics()
    counters.record("digest_mismatch")
    done = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=counters.exposition(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.s3
def test_a_wrong_object_is_downloaded_again_only_once_it_changed(
    moto_endpoint: str, tmp_path: Path
) -> None:
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=bucket)
    hex_digest = hashlib.sha256(b"the model").hexdigest()
    store = RemoteStore.open(f"s3://{bucket}/fleet", moto_endpoint)
    key = store.location.object_key(hex_digest)
    client.put_object(Bucket=bucket, Key=key, Body=b"not it")
    gets: list[str] = []
    store.client.meta.events.register(
        "before-call.s3.GetObject", lambda **kwargs: gets.append("GetObject")
    )
    mismatched = MismatchedObjects()

    for _ in range(3):
        with pytest.raises(DigestMismatchError):
            fetch_model(store, hex_digest, tmp_path / "cache", mismatched=mismatched)
    assert len(gets) == 1  # the same version is hashed once

    client.put_object(Bucket=bucket, Key=key, Body=b"the model")
    result = fetch_model(store, hex_digest, tmp_path / "cache", mismatched=mismatched)
    assert (result.status, result.path.read_bytes()) == ("downloaded", b"the model")
    assert len(gets) == 2


def test_metrics_are_served_over_ipv6_and_ipv4() -> None:
    """An IPv6-only cluster scrapes the pod's IPv6 address; an IPv4 one its IPv4 address."""
    if not socket.has_dualstack_ipv6():
        pytest.skip("this system has no dual-stack IPv6 sockets")
    with serving_metrics(FetchMetrics(), 0) as port:
        for url in (f"http://[::1]:{port}/metrics", f"http://127.0.0.1:{port}/metrics"):
            with urllib.request.urlopen(url, timeout=5) as response:
                assert FAILURES in response.read().decode(), url
