"""An independent Sparkplug host for the edge-node interop test (paho-mqtt + pysparkplug).

    edge_node_host.py PORT GROUP NODE SECONDS

Subscribes to spBv1.0/# on 127.0.0.1:PORT and prints `ready` once subscribed. Then prints
one JSON line per message the edge node GROUP/NODE sends, decoded by pysparkplug (DATA
metrics resolved through the matching birth): topic, type, qos, retain, timestamp, seq,
metrics. After the first DBIRTH it writes `setpoint` = 321 (UInt16, by name) with a
pysparkplug-encoded DCMD. Exits after the first NDEATH or after SECONDS.
"""

import json
import queue
import sys
import time

import paho.mqtt.client as mqtt
import pysparkplug as sp
from pysparkplug import DataType

from sparkplug_interop import metric_json, payload_json

DECODERS = {
    "NBIRTH": sp.NBirth,
    "DBIRTH": sp.DBirth,
    "NDATA": sp.NData,
    "DDATA": sp.DData,
    "DDEATH": sp.DDeath,
    "NDEATH": sp.NDeath,
}


def main() -> None:
    port, group, node, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    inbox: "queue.Queue" = queue.Queue()
    subscribed = queue.Queue()
    client = mqtt.Client(client_id="pysparkplug-host", protocol=mqtt.MQTTv311)
    client.on_message = lambda c, u, m: inbox.put((m.topic, m.qos, m.retain, bytes(m.payload)))
    client.on_subscribe = lambda c, u, mid, q: subscribed.put(True)
    client.connect("127.0.0.1", port)
    client.subscribe("spBv1.0/#", qos=1)
    client.loop_start()
    subscribed.get(timeout=10)
    print("ready", flush=True)

    births = {}
    wrote = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            topic, qos, retain, raw = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        levels = topic.split("/")
        if len(levels) < 4 or levels[1] != group or levels[3] != node:
            continue
        kind = levels[2]
        device = levels[4] if len(levels) > 4 else None
        decoder = DECODERS.get(kind)
        if decoder is None:
            continue
        if kind in ("NDATA", "DDATA"):
            payload = decoder.decode(raw, birth=births.get(device))
        else:
            payload = decoder.decode(raw)
        if kind in ("NBIRTH", "DBIRTH"):
            births[device] = payload
        if kind == "NDEATH":
            line = {"timestamp": payload.timestamp, "seq": None,
                    "metrics": [metric_json(payload.bd_seq_metric)]}
        else:
            line = payload_json(payload)
        line.update({"topic": topic, "type": kind, "qos": qos, "retain": bool(retain)})
        print(json.dumps(line), flush=True)
        if kind == "DBIRTH" and not wrote:
            wrote = True
            cmd = sp.DCmd(
                timestamp=sp.get_current_timestamp(),
                metrics=(sp.Metric(timestamp=sp.get_current_timestamp(), name="setpoint",
                                   datatype=DataType.UINT16, value=321),),
            )
            client.publish(f"spBv1.0/{group}/DCMD/{node}/{device}", cmd.encode(), qos=1)
        if kind == "NDEATH":
            break
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
