#!/usr/bin/env python3
"""Drives the built-in rating endpoint (/rating/v1) for the rating section of
scripts/bench. Standard library only; talks to 127.0.0.1 over kept-alive connections.

Records are native usage records (README, "A native record") of the period that starts
on PERIOD (YYYY-MM-DD, UTC midnight) and ends a month later, meter chat.completions,
models cycling over gpt-4o-mini, gpt-4o and o3-mini, one request each; ids are "rec_" +
32 hex of a hash of customer and sequence number, so every record is new. Batches are
signed as the flush signs them (X-Edgemeter-Signature: t=<unix>,v1=<HMAC-SHA256 of
"t.body">), at send time.

  rating_load.py spread --customers N --seconds S ...
      accounts for N customers, then batches in which every record is another customer's
      (as a flush sends them: one record per dirty customer), for S seconds
  rating_load.py single --customer ID --seconds S --target N --checkpoints 10000,100000
      one customer: ingests batches until N records are stored or S seconds have passed;
      at each checkpoint (and at the end) times GET .../invoices/PERIOD and
      POST /rating/v1/preview (a draft book: the starter plan with a base fee), the median
      of --calls calls each; then sends one batch again to check that it is deduplicated

Common: --url URL --token ADMIN_TOKEN --secret RATING_SECRET --period YYYY-MM-DD
--price-book FILE [--batch 500] [--threads 2]. Prints JSON lines: one per checkpoint
("kind": "checkpoint") and a summary ("kind": "summary"). Every request has a 60 s
timeout; a non-2xx answer stops the run and is reported as "error".
"""

import argparse
import calendar
import datetime as dt
import hashlib
import hmac
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

MODELS = ["gpt-4o-mini", "gpt-4o", "o3-mini"]


class Client:
    """One kept-alive HTTP/1.1 connection per thread."""

    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def call(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        # A connection left idle (while other threads send) may have been closed by the
        # server: try once more on a fresh one. Safe for ingestion too, which dedupes.
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Run:
    def __init__(self, args):
        self.args = args
        day = dt.datetime.strptime(args.period, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
        self.start_ms = int(day.timestamp() * 1000)
        days = calendar.monthrange(day.year, day.month)[1]
        self.end_ms = self.start_ms + days * 86_400_000
        self.admin = {"authorization": f"Bearer {args.token}", "content-type": "application/json"}
        self.lock = threading.Lock()
        self.local = threading.local()

    def client(self) -> Client:
        if not hasattr(self.local, "c"):
            self.local.c = Client(self.args.url)
        return self.local.c

    def admin_call(self, method: str, path: str, doc) -> bytes:
        body = None if doc is None else json.dumps(doc).encode()
        status, answer = self.client().call(method, path, body, self.admin)
        if status // 100 != 2:
            raise RuntimeError(f"{method} {path}: {status} {answer[:300]!r}")
        return answer

    def set_account(self, customer: str) -> None:
        self.admin_call("PUT", f"/rating/v1/customers/{customer}/account",
                        {"plan": "starter", "account": {"customer_id": customer, "country": "US"}})

    def record(self, customer: str, seq: int) -> dict:
        rid = hashlib.sha256(f"{customer}|{seq}".encode()).hexdigest()[:32]
        return {"id": f"rec_{rid}", "customer": customer, "period_start_ms": self.start_ms,
                "period_end_ms": self.end_ms, "meter": "chat.completions",
                "model": MODELS[seq % 3], "seq_from": seq, "seq_to": seq, "requests": 1,
                "input_tokens": 1000 + seq % 97, "output_tokens": 200 + seq % 31,
                "cached_tokens": seq % 13, "reasoning_tokens": 0, "images": 0, "seconds": 0,
                "estimated": 0, "final": False, "recorded_at_ms": self.start_ms + 1000}

    def body(self, records: list) -> bytes:
        batch_id = "bat_" + hashlib.sha256("\n".join(r["id"] for r in records).encode()).hexdigest()[:32]
        doc = {"schema": "edgemeter.usage.v1", "batch_id": batch_id,
               "sent_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "records": records}
        return json.dumps(doc, separators=(",", ":")).encode()

    def ingest(self, body: bytes) -> dict:
        t = int(time.time())
        mac = hmac.new(self.args.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        status, answer = self.client().call("POST", "/rating/v1/ingest", body, {
            "content-type": "application/json", "x-edgemeter-signature": f"t={t},v1={mac}"})
        if status != 200:
            raise RuntimeError(f"ingest: {status} {answer[:300]!r}")
        return json.loads(answer)

    def pump(self, make_batch, stop) -> dict:
        """Sends batches from make_batch() (None: no more) on --threads threads until
        stop() or an error; returns the counts."""
        out = {"batches": 0, "stored": 0, "duplicates": 0, "error": None}

        def worker():
            while True:
                with self.lock:
                    if out["error"] or stop(out):
                        return
                    records = make_batch()
                if records is None:
                    return
                try:
                    answer = self.ingest(self.body(records))
                except Exception as e:  # noqa: BLE001 - reported
                    with self.lock:
                        out["error"] = out["error"] or f"{type(e).__name__}: {e}"[:400]
                    return
                with self.lock:
                    out["batches"] += 1
                    out["stored"] += answer.get("stored", 0)
                    out["duplicates"] += answer.get("duplicates", 0)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=self.args.seconds + 120)
        return out


def timed(fn, calls: int) -> dict:
    """Median and max of `calls` timed calls, in ms."""
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(samples), 3), "max_ms": round(max(samples), 3)}


def flush_shard(customer: str, shards: int) -> int:
    """The flush shard a customer's counter pushes to (flush::shard_for)."""
    return int.from_bytes(hashlib.sha256(customer.encode()).digest()[:4], "big") % shards


def requests_billed(run: Run, customer: str) -> int | None:
    inv = json.loads(run.admin_call("GET", f"/rating/v1/customers/{customer}/invoices/{run.args.period}", None))
    for ln in inv.get("lines", []):
        if isinstance(ln, dict) and ln.get("meter") == "requests":
            return ln.get("quantity", ln.get("units"))
    return None


def spread(run: Run, a) -> None:
    names = [f"{a.prefix}{i:05d}" for i in range(a.customers)]
    t0 = time.monotonic()
    for n in names if not a.accounts_set else []:
        run.set_account(n)
    accounts_s = time.monotonic() - t0
    # A flush batch holds the customers of one flush shard (--flush-shards N); with 0,
    # any customers, in order.
    groups = [names]
    if a.flush_shards > 0:
        groups = [[] for _ in range(a.flush_shards)]
        for n in names:
            groups[flush_shard(n, a.flush_shards)].append(n)
        groups = [g for g in groups if g]
    cursors = [0] * len(groups)
    seq = [0]
    sent = {}

    def make_batch():
        g = seq[0] // a.batch % len(groups)
        records = []
        for _ in range(a.batch):
            customer = groups[g][cursors[g] % len(groups[g])]
            cursors[g] += 1
            records.append(run.record(customer, seq[0]))
            sent[customer] = sent.get(customer, 0) + 1
            seq[0] += 1
        return records

    t0 = time.monotonic()
    deadline = t0 + a.seconds
    out = run.pump(make_batch, lambda o: time.monotonic() >= deadline)
    secs = time.monotonic() - t0
    # Every record is new and each counts one request: a sample of customers' invoices
    # must bill exactly the records sent to them (every sent batch was answered 200).
    checked, wrong = 0, []
    if out["error"] is None:
        for n in names[:: max(1, len(names) // max(1, a.verify))][: a.verify]:
            billed = requests_billed(run, n)
            checked += 1
            if billed is None or int(float(billed)) != sent.get(n, 0):
                wrong.append({"customer": n, "sent": sent.get(n, 0), "billed": billed})
    print(json.dumps({"kind": "summary", "customers": a.customers, "flush_shards": a.flush_shards,
                      "customers_with_records": len(sent), "accounts_s": round(accounts_s, 3),
                      "seconds": round(secs, 3), "records_per_s": round(out["stored"] / secs),
                      "invoices_checked": checked, "invoices_wrong": wrong, **out}))


def single(run: Run, a) -> None:
    cust = a.customer
    run.set_account(cust)
    with open(a.price_book) as f:
        draft = json.load(f)
    draft["plans"]["starter"]["base_fee"] = "5.00"
    preview_doc = {"customer": cust, "period": a.period, "price_book": draft}
    checkpoints = sorted(int(c) for c in a.checkpoints.split(",") if c)
    seq = [0]
    stored = [0]
    sending_s = [0.0]
    deadline = time.monotonic() + a.seconds
    first_invoice = [None]

    def measure(label: str) -> None:
        inv = json.loads(run.admin_call("GET", f"/rating/v1/customers/{cust}/invoices/{a.period}", None))
        pv = json.loads(run.admin_call("POST", "/rating/v1/preview", preview_doc))
        first_invoice[0] = inv
        line_units = {ln.get("meter", "?") + "/" + str(ln.get("model")): ln.get("quantity", ln.get("units"))
                      for ln in inv.get("lines", []) if isinstance(ln, dict)}
        print(json.dumps({
            "kind": "checkpoint", "label": label, "records": stored[0],
            "invoice": timed(lambda: run.admin_call(
                "GET", f"/rating/v1/customers/{cust}/invoices/{a.period}", None), a.calls),
            "preview": timed(lambda: run.admin_call("POST", "/rating/v1/preview", preview_doc), a.calls),
            "invoice_total": inv.get("total"), "invoice_status": inv.get("status"),
            "invoice_lines": len(inv.get("lines", [])), "line_units": line_units,
            "preview_difference": (pv.get("difference") or {}).get("total"),
        }), flush=True)

    def make_batch():
        if seq[0] >= a.target:
            return None
        n = min(a.batch, a.target - seq[0])
        records = [run.record(cust, seq[0] + i) for i in range(n)]
        seq[0] += n
        return records

    error = None
    total_batches = 0
    total_dupes = 0
    for goal in [c for c in checkpoints if c < a.target] + [a.target]:
        t0 = time.monotonic()
        out = run.pump(make_batch, lambda o, g=goal: stored[0] + o["stored"] >= g
                       or time.monotonic() >= deadline)
        sending_s[0] += time.monotonic() - t0
        stored[0] += out["stored"]
        total_batches += out["batches"]
        total_dupes += out["duplicates"]
        if out["error"]:
            error = out["error"]
            break
        reached = stored[0] >= goal
        measure(str(goal) if reached else "time")
        if not reached:
            break
    dedupe = None
    if error is None and seq[0] >= a.batch:
        # The last full batch again: every record must be reported as a duplicate.
        again = run.ingest(run.body([run.record(cust, seq[0] - a.batch + i) for i in range(a.batch)]))
        dedupe = {"sent": a.batch, "stored": again.get("stored"), "duplicates": again.get("duplicates")}
    print(json.dumps({"kind": "summary", "customer": cust, "records": stored[0], "batches": total_batches,
                      "duplicates": total_dupes, "sending_s": round(sending_s[0], 3),
                      "records_per_s": round(stored[0] / sending_s[0]) if sending_s[0] else 0,
                      "target": a.target, "reached": stored[0] >= a.target, "dedupe": dedupe,
                      "error": error}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["spread", "single"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--flush-shards", type=int, default=16)
    ap.add_argument("--verify", type=int, default=20)
    ap.add_argument("--prefix", default="rate-")
    ap.add_argument("--accounts-set", action="store_true", help="the customers' accounts exist")
    ap.add_argument("--token", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--period", required=True)
    ap.add_argument("--price-book", default="price_book.json")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--customer", default="rating-bench")
    ap.add_argument("--target", type=int, default=1_000_000)
    ap.add_argument("--checkpoints", default="10000,100000")
    ap.add_argument("--calls", type=int, default=20)
    a = ap.parse_args()
    run = Run(a)
    (spread if a.mode == "spread" else single)(run, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
