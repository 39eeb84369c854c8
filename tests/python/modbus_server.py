"""Independent Modbus TCP server (pymodbus) with known register contents.

Lays out one value of every type in every byte/word order in holding registers, using
Python's struct module, and prints one JSON line: {"port": N, "tags": [...]} where each tag
has name, address, type, order, value. Then answers commands on stdin, one per line:
  hr ADDRESS COUNT   -> JSON list of holding registers
  co ADDRESS COUNT   -> JSON list of coils (0/1)
Ends at end of stdin.
"""

import asyncio
import json
import logging
import struct
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

UNIT = 1

CASES = [
    ("i16", "h", -12345, ["AB", "BA"]),
    ("u16", "H", 0xBEEF, ["AB", "BA"]),
    ("i32", "i", -123456789, ["ABCD", "BADC", "CDAB", "DCBA"]),
    ("u32", "I", 0xDEADBEEF, ["ABCD", "BADC", "CDAB", "DCBA"]),
    ("f32", "f", -1234.5, ["ABCD", "BADC", "CDAB", "DCBA"]),
    ("i64", "q", -1234567890123456789, ["ABCDEFGH", "BADCFEHG", "GHEFCDAB", "HGFEDCBA"]),
    ("u64", "Q", 0x0123456789ABCDEF, ["ABCDEFGH", "BADCFEHG", "GHEFCDAB", "HGFEDCBA"]),
    ("f64", "d", 3.141592653589793, ["ABCDEFGH", "BADCFEHG", "GHEFCDAB", "HGFEDCBA"]),
]


def registers(fmt, value, order):
    be = struct.pack(">" + fmt, value)
    laid = bytes(be[ord(letter) - ord("A")] for letter in order)
    return [int.from_bytes(laid[i : i + 2], "big") for i in range(0, len(laid), 2)]


def build():
    hr = [0] * 300
    tags = []
    address = 0
    for ty, fmt, value, orders in CASES:
        for order in orders:
            regs = registers(fmt, value, order)
            hr[address : address + len(regs)] = regs
            tags.append(
                {"name": f"{ty}_{order}", "address": address, "type": ty, "order": order, "value": value}
            )
            address += len(regs)
    text = b"PYMODBUS"
    hr[address : address + 4] = [int.from_bytes(text[i : i + 2], "big") for i in range(0, 8, 2)]
    tags.append({"name": "text", "address": address, "type": "string", "order": "ABCD", "value": "PYMODBUS"})
    return hr, tags


async def main():
    logging.disable(logging.WARNING)
    hr, tags = build()
    # A block at address 1 serves protocol address 0 (pymodbus counts from 1 here).
    device = ModbusDeviceContext(
        co=ModbusSequentialDataBlock(1, [0] * 100),
        di=ModbusSequentialDataBlock(1, [0] * 100),
        hr=ModbusSequentialDataBlock(1, hr),
        ir=ModbusSequentialDataBlock(1, [0] * 100),
    )
    server = ModbusTcpServer(ModbusServerContext(devices={UNIT: device}), address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "unit": UNIT, "tags": tags}), flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("hr", "co"):
            print(json.dumps({"error": f"bad command {line.strip()!r}"}), flush=True)
            continue
        fc = 3 if parts[0] == "hr" else 1
        values = await server.async_getValues(UNIT, fc, int(parts[1]), int(parts[2]))
        print(json.dumps([int(v) for v in values]), flush=True)
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
