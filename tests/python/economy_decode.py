"""Decodes an edge node's traffic with pysparkplug, compressed envelopes included.

    economy_decode.py PORT GROUP NODE SECONDS

Subscribes to spBv1.0/# on 127.0.0.1:PORT and prints `ready` once subscribed. A payload
whose uuid is SPBV1.0_COMPRESSED is opened as Tahu does (body inflated by its `algorithm`:
DEFLATE is a zlib stream, GZIP a gzip member) and the inner payload decoded by pysparkplug;
DATA metrics are resolved through the matching birth. Prints one JSON line per DDATA:
device and samples [name, timestamp (the metric's, else the payload's), value]. Exits after
SECONDS, or 3 s after the last message of the node.
"""

import gzip
import json
import queue
import sys
import time
import zlib

import paho.mqtt.client as mqtt
import pysparkplug as sp
from pysparkplug._protobuf import Payload as PbPayload

COMPRESSED = "SPBV1.0_COMPRESSED"


def inflate(raw: bytes) -> bytes:
    envelope = PbPayload.FromString(raw)
    if envelope.uuid != COMPRESSED:
        return raw
    algorithm = "DEFLATE"
    for m in envelope.metrics:
        if m.name == "algorithm":
            algorithm = m.string_value
    if algorithm == "GZIP":
        return gzip.decompress(envelope.body)
    return zlib.decompress(envelope.body)


def main() -> None:
    port, group, node, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    inbox: "queue.Queue" = queue.Queue()
    subscribed: "queue.Queue" = queue.Queue()
    client = mqtt.Client(client_id=f"pysparkplug-economy-{node}", protocol=mqtt.MQTTv311)
    client.on_message = lambda c, u, m: inbox.put((m.topic, bytes(m.payload)))
    client.on_subscribe = lambda c, u, mid, q: subscribed.put(True)
    client.connect("127.0.0.1", port)
    client.subscribe("spBv1.0/#", qos=0)
    client.loop_start()
    subscribed.get(timeout=10)
    print("ready", flush=True)
    births = {}
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        if last is not None and time.monotonic() - last > 3:
            break
        try:
            topic, raw = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        levels = topic.split("/")
        if len(levels) < 5 or levels[1] != group or levels[3] != node:
            continue
        last = time.monotonic()
        kind, device = levels[2], levels[4]
        inner = inflate(raw)
        if kind == "DBIRTH":
            births[device] = sp.DBirth.decode(inner)
        elif kind == "DDATA":
            p = sp.DData.decode(inner, birth=births.get(device))
            samples = [
                [m.name, m.timestamp if m.timestamp is not None else p.timestamp, m.value]
                for m in p.metrics
            ]
            print(json.dumps({"device": device, "samples": samples}), flush=True)
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
