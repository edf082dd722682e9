#!/usr/bin/env python3
"""Check C2SP tlog-proof files of a clerk bundle without clerk (Python 3 stdlib + openssl 3).

  python3 verify_proof.py --key LOGKEY [--key OLDKEY] [--witness WKEY --quorum K]
                          [--file screenshots/SHA.png] PROOF...
  python3 verify_proof.py --tree-root journal.jsonl [SIZE]   (prints the RFC 6962 root)

A proof is: "c2sp.org/tlog-proof@v1", "extra <base64 journal line>", "index N", the audit
path (base64 hashes), a blank line, the signed checkpoint. For each proof this recomputes the
record's hash from its line (canonical JSON without "hash"), checks index == seq - 1, the
leaf SHA-256(0x00||hash), the path up to the checkpoint's root (RFC 9162 2.1.3.2), the
log's Ed25519 signature on the checkpoint and, if asked, K witness cosignatures. --file
checks the record names that file's SHA-256. Exit 0 = every proof holds."""
import base64, hashlib, json, os, subprocess, sys, tempfile

SPKI = bytes.fromhex("302a300506032b6570032100")  # DER prefix of an Ed25519 public key
DASH = "\u2014 "


def sha(b):
    return hashlib.sha256(b).digest()


def parse_key(text):
    name, kid, b64 = text.strip().split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    alg, pub = raw[0], raw[1:]
    if len(pub) != 32 or alg not in (1, 4):
        raise ValueError(f"not an Ed25519 note key: {text}")
    if sha(name.encode() + b"\n" + bytes([alg]) + pub)[:4].hex() != kid:
        raise ValueError(f"key id {kid} does not match the key")
    return {"name": name, "id": bytes.fromhex(kid), "alg": alg, "pub": pub}


def ed25519_ok(pub, msg, sig):
    with tempfile.TemporaryDirectory() as d:
        files = {"k.pem": b"-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(SPKI + pub)
                 + b"\n-----END PUBLIC KEY-----\n", "m": msg, "s": sig}
        for n, b in files.items():
            with open(os.path.join(d, n), "wb") as f:
                f.write(b)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                            os.path.join(d, "k.pem"), "-rawin", "-in", os.path.join(d, "m"),
                            "-sigfile", os.path.join(d, "s")], capture_output=True)
        return r.returncode == 0


_seen = {}


def signed(note_text, key):
    """The time of key's (co)signature on the note, None if absent or invalid."""
    cache = (note_text, key["name"], key["id"])
    if cache in _seen:
        return _seen[cache]
    text, _, sigs = note_text.rpartition("\n\n")
    text += "\n"
    found = None
    for line in sigs.splitlines():
        if not line.startswith(DASH):
            continue
        name, _, b64 = line[len(DASH):].partition(" ")
        raw = base64.b64decode(b64)
        if name != key["name"] or raw[:4] != key["id"]:
            continue
        if key["alg"] == 1 and len(raw) == 68 and ed25519_ok(key["pub"], text.encode(), raw[4:]):
            found = 0
        if key["alg"] == 4 and len(raw) == 76:
            t = int.from_bytes(raw[4:12], "big")
            msg = f"cosignature/v1\ntime {t}\n{text}".encode()
            if ed25519_ok(key["pub"], msg, raw[12:]):
                found = t
    _seen[cache] = found
    return found


def node(l, r):
    return sha(b"\x01" + l + r)


def inclusion_root(index, size, leaf, path):
    """RFC 9162 2.1.3.2: the root the path leads to, or None."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def record_hash(line):
    rec = json.loads(line.decode("utf-8"))
    claimed = rec.pop("hash")
    body = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return rec, claimed, hashlib.sha256(body.encode("utf-8")).hexdigest()


def check(path, logkeys, witnesses, quorum, file_sha):
    text = open(path, encoding="utf-8").read()
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != "c2sp.org/tlog-proof@v1":
        return "not a c2sp.org/tlog-proof@v1 file"
    extra = None
    if lines[1].startswith("extra "):
        extra = base64.b64decode(lines[1][6:], validate=True)
        lines = lines[1:]
    if not lines[1].startswith("index ") or extra is None:
        return "no record line or no index line"
    index = int(lines[1][6:])
    audit = [base64.b64decode(x, validate=True) for x in lines[2:]]
    cp = note.split("\n")
    origin, size, root = cp[0], int(cp[1]), base64.b64decode(cp[2], validate=True)
    if not any(k["name"] == origin and signed(note, k) is not None for k in logkeys):
        return f"the checkpoint (size {size}) is not signed by the log key given"
    cosigned = [w["name"] for w in witnesses if signed(note, w) is not None]
    if len(cosigned) < quorum:
        return f"{len(cosigned)} of {quorum} witness cosignatures on checkpoint size {size}"
    rec, claimed, computed = record_hash(extra)
    if computed != claimed:
        return f"record seq {rec['seq']} was edited (hash mismatch)"
    if rec["seq"] != index + 1:
        return f"record seq {rec['seq']} cannot sit at index {index}"
    if file_sha is not None and rec.get("event", {}).get("sha256") != file_sha:
        return f"record seq {rec['seq']} does not name a file with sha256 {file_sha}"
    leaf = sha(b"\x00" + bytes.fromhex(claimed))
    if inclusion_root(index, size, leaf, audit) != root:
        return f"record seq {rec['seq']} is not in the checkpointed tree of size {size}"
    return None


def mth(leaves):
    """RFC 6962 2.1 Merkle Tree Hash, recursively (independent of clerk's iterative code)."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def main(argv):
    if argv[:1] == ["--tree-root"]:
        leaves = [sha(b"\x00" + bytes.fromhex(json.loads(l)["hash"]))
                  for l in open(argv[1], "rb") if l.strip()]
        size = int(argv[2]) if len(argv) > 2 else len(leaves)
        print(base64.b64encode(mth(leaves[:size])).decode())
        return 0
    logkeys, witnesses, quorum, file_sha, proofs = [], [], 0, None, []
    it = iter(argv)
    for a in it:
        if a == "--key":
            logkeys.append(parse_key(next(it)))
        elif a == "--witness":
            witnesses.append(parse_key(next(it)))
        elif a == "--quorum":
            quorum = int(next(it))
        elif a == "--file":
            file_sha = hashlib.sha256(open(next(it), "rb").read()).hexdigest()
        else:
            proofs.append(a)
    if not logkeys or not proofs:
        print(__doc__)
        return 2
    bad = 0
    for p in proofs:
        try:
            problem = check(p, logkeys, witnesses, quorum, file_sha)
        except Exception as e:  # a malformed file is a failed proof, never a pass
            problem = f"malformed: {e}"
        if problem:
            print(f"{p}: FAILED: {problem}")
            bad += 1
    print(f"{'OK' if not bad else 'FAILED'}: {len(proofs) - bad} of {len(proofs)} proofs hold")
    return 1 if bad else 0


sys.exit(main(sys.argv[1:]))
