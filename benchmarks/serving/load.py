"""A bounded load generator: N concurrent clients, each sending a fixed number of streamed
completions through the openai client, on loopback."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai

PROMPT = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle. "
    "Describe the sea, the weather and the keeper's daily routine in detail."
)


@dataclass(frozen=True)
class Sample:
    ttft_s: float
    tokens: int


@dataclass(frozen=True)
class Level:
    clients: int
    samples: list[Sample]
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall_s

    def ttft_ms(self, percentile: int) -> float:
        """Nearest-rank percentile: with a handful of samples p95 is simply the slowest."""
        ordered = sorted(s.ttft_s for s in self.samples)
        rank = max(0, -(-percentile * len(ordered) // 100) - 1)
        return ordered[rank] * 1000

    @property
    def ttft_p50_ms(self) -> float:
        return statistics.median(s.ttft_s for s in self.samples) * 1000


def one_request(api: openai.OpenAI, model: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    stream = api.completions.create(
        model=model,
        prompt=PROMPT,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        # Every request generates exactly max_tokens, so configurations compare like for like.
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            tokens += 1
            if first is None:
                first = time.perf_counter()
    if first is None:
        raise RuntimeError("the server streamed no tokens")
    return Sample(ttft_s=first - start, tokens=tokens)


def run_level(
    port: int, key: str, model: str, *, clients: int, per_client: int, max_tokens: int
) -> Level:
    api = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=900
    )

    def client(_: int) -> list[Sample]:
        return [one_request(api, model, max_tokens) for _ in range(per_client)]

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        samples = [s for batch in pool.map(client, range(clients)) for s in batch]
    return Level(clients=clients, samples=samples, wall_s=time.perf_counter() - start)
