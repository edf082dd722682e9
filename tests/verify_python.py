#!/usr/bin/env python3
"""Check a clerk journal: python3 verify_journal.py journal.jsonl [--excerpt]
Recomputes every record's hash (SHA-256 of its canonical JSON without "hash") and, for a
full journal, the chain: seq 1, 2, 3, ... and prev == previous hash. --excerpt (export
bundles): own hashes and increasing seq only. Exit status 0 = intact, 1 = problems."""
import hashlib, json, sys

path, excerpt = sys.argv[1], "--excerpt" in sys.argv[2:]
seq, head, bad, n = 0, "0" * 64, 0, 0
for n, raw in enumerate(open(path, "rb"), 1):
    try:
        rec = json.loads(raw.decode("utf-8"))
        claimed = rec.pop("hash")
        body = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except Exception as e:
        print(f"line {n}: not a record: {e}"); bad += 1; continue
    if hashlib.sha256(body.encode("utf-8")).hexdigest() != claimed:
        print(f"line {n}: record seq {rec['seq']} was edited (hash mismatch)"); bad += 1
    if excerpt and rec["seq"] <= seq:
        print(f"line {n}: seq {rec['seq']} after seq {seq}"); bad += 1
    if not excerpt and (rec["seq"] != seq + 1 or rec["prev"] != head):
        print(f"line {n}: record seq {rec['seq']} does not follow seq {seq}"); bad += 1
    seq, head = rec["seq"], claimed
if n and not raw.endswith(b"\n"):
    print(f"line {n}: incomplete last line"); bad += 1
print(f"{'INTACT' if not bad else 'FAILED'}: {n} records, head seq {seq} hash {head}")
sys.exit(1 if bad else 0)
