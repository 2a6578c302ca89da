"""Parses a CloudEvents batch (JSON array on stdin) with the CloudEvents Python SDK.

Each event must parse as a spec-valid v1.0 event; prints the ids, one a line. Exits
non-zero on the first invalid event.
"""

import json
import sys

from cloudevents.core.formats.json import JSONFormat

batch = json.load(sys.stdin)
assert isinstance(batch, list) and batch, "a batch is a non-empty JSON array"
for raw in batch:
    event = JSONFormat().read(None, json.dumps(raw))
    assert event.get_specversion() == "1.0"
    assert event.get_time() is not None
    print(event.get_id())
