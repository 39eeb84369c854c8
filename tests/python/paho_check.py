"""An independent MQTT client (paho-mqtt 1.6.1) against the embedded broker, for
MQTT 3.1.1 and 5: retained STATE reaches a later subscriber with the retain flag, and a
QoS 1 will reaches it at QoS 1 when the publisher's socket drops without DISCONNECT.

Usage: paho_check.py HOST PORT. Prints "ok <protocol>" per protocol; exits non-zero with
the reason on the first failure.
"""

import json
import sys
import time

import paho.mqtt.client as mqtt

LIMIT = 10.0


def wait(condition, what):
    deadline = time.monotonic() + LIMIT
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


def new_client(client_id, protocol):
    clean = None if protocol == mqtt.MQTTv5 else True
    client = mqtt.Client(client_id=client_id, clean_session=clean, protocol=protocol)
    client.connected = False
    client.messages = []

    def on_connect(c, _userdata, _flags, rc, _properties=None):
        if rc != 0:
            sys.exit(f"{client_id}: CONNECT refused with {rc}")
        c.connected = True

    def on_message(c, _userdata, message):
        c.messages.append(message)

    client.on_connect = on_connect
    client.on_message = on_message
    return client


def start(client, host, port):
    client.connect(host, port, keepalive=30)
    client.loop_start()
    wait(lambda: client.connected, f"{client._client_id!r} to connect")


def find(client, topic):
    return next((m for m in client.messages if m.topic == topic), None)


def check(host, port, protocol, name):
    state_topic = f"spBv1.0/STATE/py-host-{name}"
    death_topic = f"spBv1.0/py/NDEATH/edge-{name}"
    state = json.dumps({"online": True, "timestamp": int(time.time() * 1000)}).encode()

    primary = new_client(f"py-host-{name}", protocol)
    start(primary, host, port)
    info = primary.publish(state_topic, state, qos=1, retain=True)
    wait(info.is_published, "the STATE PUBACK")

    later = new_client(f"py-later-{name}", protocol)
    start(later, host, port)
    later.subscribe("spBv1.0/#", qos=1)
    wait(lambda: find(later, state_topic), "the retained STATE")
    got = find(later, state_topic)
    if got.payload != state or not got.retain or got.qos != 1:
        sys.exit(f"retained STATE wrong: {got.payload!r} retain={got.retain} qos={got.qos}")

    edge = new_client(f"py-edge-{name}", protocol)
    edge.will_set(death_topic, b"bdSeq=9", qos=1, retain=False)
    start(edge, host, port)
    # Drop the socket without DISCONNECT.
    edge.loop_stop()
    edge.socket().close()
    wait(lambda: find(later, death_topic), "the will")
    got = find(later, death_topic)
    if got.payload != b"bdSeq=9" or got.qos != 1:
        sys.exit(f"will wrong: {got.payload!r} qos={got.qos}")

    for c in (primary, later):
        c.disconnect()
        c.loop_stop()
    print(f"ok {name}", flush=True)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    check(host, port, mqtt.MQTTv311, "3.1.1")
    check(host, port, mqtt.MQTTv5, "5")


if __name__ == "__main__":
    main()
