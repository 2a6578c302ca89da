"""The official OpenAI and Anthropic Python SDKs, unchanged, through edgemeter.

Run by tests/sdk.rs: argv = port, live key (fake OpenAI upstream), test key (sandbox),
key of a customer on a plan with a 100 tokens-per-minute limit. Exits non-zero on the
first failed check.
"""

import sys

import anthropic
import openai

port, live_key, test_key, tight_key = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
base = f"http://127.0.0.1:{port}"
client = openai.OpenAI(base_url=f"{base}/v1", api_key=live_key, max_retries=0)
messages = [{"role": "user", "content": "Say something"}]

# Non-streamed: the SDK parses the body, usage included.
done = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=3)
assert done.choices[0].message.content == "tok0 tok1 tok2 ", done
assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (21, 3), done.usage
raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, max_tokens=1)
assert raw.headers["x-edgemeter-cost"] == "0.000003375", raw.headers  # (16*.15 + 5*.075 + 1*.6) / 1e6

# Streamed without asking for usage: the SDK sees no usage chunk.
chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=4, stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == "tok0 tok1 tok2 tok3 ", text
assert all(not c.choices == [] for c in chunks), "the injected usage chunk leaked to the client"

# Streamed with usage: the SDK gets it in the last chunk.
chunks = list(client.chat.completions.create(
    model="gpt-4o-mini", messages=messages, max_tokens=2, stream=True,
    stream_options={"include_usage": True}))
assert chunks[-1].usage.completion_tokens == 2, chunks[-1]

emb = client.embeddings.create(model="text-embedding-3-small", input="hi")
assert emb.usage.prompt_tokens == 8, emb.usage

# Errors arrive as the SDK's own exception types.
try:
    client.chat.completions.create(model="gpt-unknown", messages=messages)
    raise AssertionError("unknown model accepted")
except openai.BadRequestError as e:
    assert e.code == "model_not_found" and "gpt-unknown" in e.message, e
try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="em_live_nobody_" + "0" * 32, max_retries=0).models.list()
    raise AssertionError("bad key accepted")
except openai.AuthenticationError as e:
    assert e.code == "invalid_api_key", e
tight = openai.OpenAI(base_url=f"{base}/v1", api_key=tight_key, max_retries=0)
try:
    tight.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=500)
    raise AssertionError("over-quota request accepted")
except openai.RateLimitError as e:
    assert e.code == "rate_limit_exceeded" and "tokens per minute" in e.message, e
    assert int(e.response.headers["retry-after"]) >= 1

# Anthropic's SDK (x-api-key auth) against the sandbox's messages API.
claude = anthropic.Anthropic(base_url=base, api_key=test_key, max_retries=0)
msg = claude.messages.create(model="claude-test", max_tokens=5, messages=messages)
assert msg.usage.output_tokens == 5 and msg.content[0].text.startswith("This is"), msg
with claude.messages.stream(model="claude-test", max_tokens=3, messages=messages) as stream:
    final = stream.get_final_message()
assert final.usage.output_tokens == 3, final.usage

print("sdk checks: 13 passed, 0 failed")
