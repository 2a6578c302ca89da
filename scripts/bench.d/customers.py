#!/usr/bin/env python3
"""Creates many customers on a running Worker, or meters one request for each, for the
flush section of scripts/bench. Standard library only; a few threads, each with its own
kept-alive connection to 127.0.0.1.

  customers.py create --url URL --token ADMIN_TOKEN --plan PLAN --prefix P --first N
                      --count N --keys-out FILE [--threads 8] [--deadline-s 240]
      creates customers P00000N..., issues each a live key (written to FILE as
      "id<TAB>key" lines) and meters one chat completion with it, which marks the
      customer dirty for the flush
  customers.py meter --url URL --keys FILE [--threads 8] [--deadline-s 240]
      meters one more chat completion for every key in FILE (dirty again)

Prints one JSON line: {"done", "failed", "seconds", "requests", "first_error"}. Stops
taking new customers at the deadline, so `done` can fall short of the count; the caller
checks. Every request has a 30 s timeout.
"""

import argparse
import http.client
import json
import queue
import sys
import threading
import time
import urllib.parse

CHAT = json.dumps({"model": "gpt-4o-mini",
                   "messages": [{"role": "user", "content": "Say hello to the benchmark."}]})


class Client:
    """One kept-alive HTTP/1.1 connection, reopened after an error."""

    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def post(self, path: str, body: str, auth: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("POST", path, body=body.encode(), headers={
                    "content-type": "application/json", "authorization": f"Bearer {auth}"})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["create", "meter"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token")
    ap.add_argument("--plan", default="bench")
    ap.add_argument("--prefix", default="c")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--keys-out")
    ap.add_argument("--keys")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--deadline-s", type=float, default=240)
    args = ap.parse_args()

    work: queue.Queue = queue.Queue()
    if args.action == "create":
        for i in range(args.first, args.first + args.count):
            work.put(f"{args.prefix}{i:06d}")
    else:
        with open(args.keys) as f:
            for line in f:
                cid, key = line.rstrip("\n").split("\t")
                work.put((cid, key))

    lock = threading.Lock()
    stats = {"done": 0, "failed": 0, "requests": 0, "first_error": None}
    keys: list[str] = []
    start = time.monotonic()
    deadline = start + args.deadline_s

    def fail(what: str) -> None:
        with lock:
            stats["failed"] += 1
            stats["first_error"] = stats["first_error"] or what[:300]

    def worker() -> None:
        c = Client(args.url)
        while time.monotonic() < deadline:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            sent = 0
            try:
                if args.action == "create":
                    cid = item
                    status, body = c.post("/admin/v1/customers",
                                          json.dumps({"id": cid, "plan": args.plan}), args.token)
                    sent += 1
                    if status != 201:
                        fail(f"creating {cid}: {status} {body!r}")
                        continue
                    status, body = c.post(f"/admin/v1/customers/{cid}/keys",
                                          '{"mode":"live"}', args.token)
                    sent += 1
                    if status != 201:
                        fail(f"key for {cid}: {status} {body!r}")
                        continue
                    key = json.loads(body)["key"]
                else:
                    cid, key = item
                status, body = c.post("/v1/chat/completions", CHAT, key)
                sent += 1
                if status != 200:
                    fail(f"chat for {cid}: {status} {body!r}")
                    continue
                with lock:
                    stats["done"] += 1
                    if args.action == "create":
                        keys.append(f"{cid}\t{key}\n")
            except Exception as e:  # noqa: BLE001 - reported, counted as failed
                fail(f"{item}: {type(e).__name__}: {e}")
            finally:
                with lock:
                    stats["requests"] += sent

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        # Each request has a 30 s timeout (two tries), so a worker ends soon after the deadline.
        t.join(timeout=max(1.0, deadline - time.monotonic()) + 90)
    stats["seconds"] = round(time.monotonic() - start, 3)
    if args.keys_out:
        with open(args.keys_out, "w") as f:
            f.writelines(sorted(keys))
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
