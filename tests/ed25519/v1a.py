"""Standard Webhooks `v1a` (ed25519) with an implementation independent of Herald's:
pyca/cryptography. The signed content is "{webhook-id}.{webhook-timestamp}.{body}".

  v1a.py verify   stdin {"public_keys": [...], "id", "timestamp", "body_base64", "signature"}
                  stdout, per `v1a,` entry of the signature header in order: the index of the
                  public key it verifies with, or null
  v1a.py sign     stdin {"id", "timestamp", "body_base64"}
                  stdout {"public_key": "whpk_…", "signature": "v1a,…"} with a fresh key
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def content(req):
    return f"{req['id']}.{req['timestamp']}.".encode() + base64.b64decode(req["body_base64"])


def verify(req):
    keys = [
        Ed25519PublicKey.from_public_bytes(base64.b64decode(k.removeprefix("whpk_")))
        for k in req["public_keys"]
    ]
    verdicts = []
    for entry in req["signature"].split():
        version, _, sig = entry.partition(",")
        if version != "v1a":
            continue
        found = None
        for i, key in enumerate(keys):
            try:
                key.verify(base64.b64decode(sig), content(req))
                found = i
                break
            except InvalidSignature:
                pass
        verdicts.append(found)
    return verdicts


def sign(req):
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "public_key": "whpk_" + base64.b64encode(public).decode(),
        "signature": "v1a," + base64.b64encode(key.sign(content(req))).decode(),
    }


if __name__ == "__main__":
    request = json.load(sys.stdin)
    print(json.dumps({"verify": verify, "sign": sign}[sys.argv[1]](request)))
