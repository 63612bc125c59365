#!/usr/bin/env python3
# A Kappa exec job: the latest Bitcoin price per currency. Kappa writes each batch's records to
# stdin as JSON lines, then {"batchEnd": ...}; the job answers with row operations, then
# {"batchEnd": true}. Kappa commits the rows and the offsets in one transaction.
import json
import sys

for line in sys.stdin:
    message = json.loads(line)
    if "batchEnd" in message:
        print(json.dumps({"batchEnd": True}), flush=True)
        continue
    tick = message["value"]
    print(json.dumps({"upsert": {"currency": tick["currency"], "ts": tick["ts"], "rate": tick["rate"]}}))
