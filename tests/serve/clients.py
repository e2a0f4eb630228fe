"""Clients of `batchling serve` written with the official Python SDKs (tests/serve.e2e.test.mjs).

usage: clients.py <mode> <server base URL> <count> [prefix]
  openai-chat       <count> concurrent chat completions, prompts "<prefix> <i>"
  anthropic-message <count> concurrent messages, prompts "<prefix> <i>"
  openai-stream     one streamed chat completion, prompt "<prefix>"
Prints one JSON object on stdout: {"answers": [...]} in prompt order.
"""
import asyncio
import json
import os
import sys

import anthropic
import openai

# Batches take minutes to hours in production: the SDKs' default timeouts (10 minutes) and
# retries are set for that here as a user would; the fake answers in seconds.
TIMEOUT_S = float(os.environ.get("CLIENT_TIMEOUT_S", "120"))
TOKEN = os.environ.get("BATCHLING_TOKEN")
HEADERS = {"x-batchling-token": TOKEN} if TOKEN else None


async def openai_chat(base, count, prefix):
    client = openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="sk-test", timeout=TIMEOUT_S,
                                max_retries=0, default_headers=HEADERS)
    async def one(i):
        r = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{prefix} {i}"}])
        return {"id": r.id, "content": r.choices[0].message.content, "totalTokens": r.usage.total_tokens}
    return await asyncio.gather(*(one(i) for i in range(count)))


async def anthropic_message(base, count, prefix):
    client = anthropic.AsyncAnthropic(base_url=f"{base}/anthropic", api_key="sk-ant-test", timeout=TIMEOUT_S,
                                      max_retries=0, default_headers=HEADERS)
    async def one(i):
        r = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": f"{prefix} {i}"}])
        return {"id": r.id, "content": r.content[0].text, "outputTokens": r.usage.output_tokens}
    return await asyncio.gather(*(one(i) for i in range(count)))


async def openai_stream(base, _count, prefix):
    client = openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="sk-test", timeout=TIMEOUT_S,
                                max_retries=0, default_headers=HEADERS)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": prefix}])
    chunks = []
    loop = asyncio.get_running_loop()
    async for part in stream:
        if part.choices and part.choices[0].delta.content:
            chunks.append({"text": part.choices[0].delta.content, "atS": loop.time()})
    return [{"content": "".join(c["text"] for c in chunks), "chunks": len(chunks),
             "spreadS": chunks[-1]["atS"] - chunks[0]["atS"] if chunks else 0}]


MODES = {"openai-chat": openai_chat, "anthropic-message": anthropic_message, "openai-stream": openai_stream}

if __name__ == "__main__":
    mode, base, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) > 4 else "hello"
    answers = asyncio.run(MODES[mode](base, count, prefix))
    print(json.dumps({"answers": answers}))
