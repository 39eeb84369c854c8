"""An independent Sparkplug B edge node (pysparkplug's EdgeNode and Device over paho-mqtt).

    pysparkplug_edge_node.py HOST PORT

Connects to the broker (NBIRTH with bdSeq, then DBIRTH of device "Meter"), publishes one
NDATA and one DDATA, disconnects cleanly (NDEATH), and prints one JSON line with what it
sent so the host's record can be compared with it.
"""

import json
import sys
import time

import pysparkplug as sp
from pysparkplug import DataType

GROUP = "Interop"
NODE = "PyEdge"
DEVICE = "Meter"


def wait_for(check, what, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    now = sp.get_current_timestamp()
    node = sp.EdgeNode(
        GROUP,
        NODE,
        metrics=[
            sp.Metric(timestamp=now, name="Temperature", datatype=DataType.DOUBLE, value=21.5),
            sp.Metric(timestamp=now, name="Count", datatype=DataType.UINT32, value=7),
            sp.Metric(timestamp=now, name="Label", datatype=DataType.STRING, value="line-1"),
        ],
    )
    node.register(
        sp.Device(
            DEVICE,
            metrics=[
                sp.Metric(timestamp=now, name="Power", datatype=DataType.FLOAT, value=1.25),
                sp.Metric(timestamp=now, name="On", datatype=DataType.BOOLEAN, value=True),
            ],
        )
    )
    node.connect(host, port=port, blocking=False)
    wait_for(lambda: node._connected, "CONNACK and births")
    time.sleep(0.3)
    later = sp.get_current_timestamp() + 1
    node.update(
        [sp.Metric(timestamp=later, name="Temperature", datatype=DataType.DOUBLE, value=22.75)]
    )
    node.update_device(
        DEVICE,
        [sp.Metric(timestamp=later, name="Power", datatype=DataType.FLOAT, value=2.5)],
    )
    time.sleep(0.3)
    node.disconnect()
    print(
        json.dumps(
            {
                "group": GROUP,
                "node": NODE,
                "device": DEVICE,
                "birth": {"Temperature": 21.5, "Count": 7, "Label": "line-1", "Power": 1.25, "On": True},
                "data": {"Temperature": 22.75, "Power": 2.5},
            }
        )
    )


if __name__ == "__main__":
    main()
