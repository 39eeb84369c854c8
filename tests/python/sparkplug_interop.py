"""Sparkplug B payloads through pysparkplug, an independent implementation with its own schema.

    sparkplug_interop.py encode DIR   write pysparkplug-encoded payloads as DIR/<case>.bin,
                                      each with DIR/<case>.json: what pysparkplug put in
    sparkplug_interop.py decode FILE KIND [BIRTH_FILE]
                                      decode FILE with pysparkplug (KIND: nbirth, dbirth, ndata,
                                      ddata, ncmd, dcmd; data and commands resolve aliases and
                                      datatypes through BIRTH_FILE), print it as JSON

The JSON is the shape `host-app decode` prints (timestamp, seq, metrics with name, alias,
timestamp, datatype by its spec name, value, is_historical, is_transient, is_null), limited
to the fields pysparkplug models, so the two can be compared field by field.
"""

import base64
import datetime
import json
import pathlib
import sys

import pysparkplug as sp
from pysparkplug import DataType

# pysparkplug's enum names -> the spec's datatype names.
SPEC_NAMES = {
    DataType.INT8: "Int8",
    DataType.INT16: "Int16",
    DataType.INT32: "Int32",
    DataType.INT64: "Int64",
    DataType.UINT8: "UInt8",
    DataType.UINT16: "UInt16",
    DataType.UINT32: "UInt32",
    DataType.UINT64: "UInt64",
    DataType.FLOAT: "Float",
    DataType.DOUBLE: "Double",
    DataType.BOOLEAN: "Boolean",
    DataType.STRING: "String",
    DataType.DATETIME: "DateTime",
    DataType.TEXT: "Text",
    DataType.UUID: "UUID",
    DataType.BYTES: "Bytes",
    DataType.FILE: "File",
    DataType.INT8_ARRAY: "Int8Array",
    DataType.INT16_ARRAY: "Int16Array",
    DataType.INT32_ARRAY: "Int32Array",
    DataType.INT64_ARRAY: "Int64Array",
    DataType.UINT8_ARRAY: "UInt8Array",
    DataType.UINT16_ARRAY: "UInt16Array",
    DataType.UINT32_ARRAY: "UInt32Array",
    DataType.UINT64_ARRAY: "UInt64Array",
    DataType.FLOAT_ARRAY: "FloatArray",
    DataType.DOUBLE_ARRAY: "DoubleArray",
    DataType.BOOLEAN_ARRAY: "BooleanArray",
    DataType.STRING_ARRAY: "StringArray",
    DataType.DATETIME_ARRAY: "DateTimeArray",
}

KINDS = {
    "nbirth": sp.NBirth,
    "dbirth": sp.DBirth,
    "ndata": sp.NData,
    "ddata": sp.DData,
    "ncmd": sp.NCmd,
    "dcmd": sp.DCmd,
}

T0 = 1_700_000_000_000


def ms(dt: datetime.datetime) -> int:
    return int(round(dt.timestamp() * 1000))


def utc(millis: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.timezone.utc)


def json_value(datatype: DataType, value):
    """A metric value as `host-app decode` prints it."""
    if value is None:
        return None
    if datatype in (DataType.BYTES, DataType.FILE):
        return base64.b64encode(value).decode("ascii")
    if datatype == DataType.DATETIME:
        return ms(value)
    if datatype == DataType.DATETIME_ARRAY:
        return [ms(v) for v in value]
    if isinstance(value, (tuple, list)):
        return list(value)
    return value


def metric_json(m: sp.Metric) -> dict:
    return {
        "name": m.name,
        "alias": m.alias,
        "timestamp": m.timestamp,
        "datatype": SPEC_NAMES.get(m.datatype, m.datatype.name),
        "value": None if m.is_null else json_value(m.datatype, m.value),
        "is_historical": m.is_historical,
        "is_transient": m.is_transient,
        "is_null": m.is_null or m.value is None,
    }


def payload_json(p) -> dict:
    return {
        "timestamp": p.timestamp,
        "seq": getattr(p, "seq", None),
        "metrics": [metric_json(m) for m in p.metrics],
    }


def every_type_metrics() -> list:
    """One metric of every datatype pysparkplug supports, with edge values."""
    values = [
        (DataType.INT8, -1),
        (DataType.INT16, -32768),
        (DataType.INT32, -2147483648),
        (DataType.INT64, -9223372036854775808),
        (DataType.UINT8, 255),
        (DataType.UINT16, 65535),
        (DataType.UINT32, 4294967295),
        (DataType.UINT64, 18446744073709551615),
        (DataType.FLOAT, -1.5),
        (DataType.DOUBLE, 3.141592653589793),
        (DataType.BOOLEAN, True),
        (DataType.STRING, "Pump 1 \u00b0C"),
        (DataType.DATETIME, utc(T0 + 123)),
        (DataType.TEXT, "long text\nwith lines"),
        (DataType.UUID, "2f1c5e0a-3b8d-4c21-9f5e-7a6b1d2c3e4f"),
        (DataType.BYTES, b"\x00\x01\xfe\xff"),
        (DataType.FILE, b"%PDF-1.7"),
        (DataType.INT8_ARRAY, (-128, -1, 0, 127)),
        (DataType.INT16_ARRAY, (-32768, -1, 0, 32767)),
        (DataType.INT32_ARRAY, (-2147483648, -1, 0, 2147483647)),
        (DataType.INT64_ARRAY, (-9223372036854775808, -1, 0, 9223372036854775807)),
        (DataType.UINT8_ARRAY, (0, 1, 255)),
        (DataType.UINT16_ARRAY, (0, 1, 65535)),
        (DataType.UINT32_ARRAY, (0, 1, 4294967295)),
        (DataType.UINT64_ARRAY, (0, 1, 18446744073709551615)),
        (DataType.FLOAT_ARRAY, (-1.5, 0.0, 2.25)),
        (DataType.DOUBLE_ARRAY, (-1.5e300, 0.0, 2.5e-300)),
        (DataType.BOOLEAN_ARRAY, (True, False, True, True, False, False, False, True, True)),
        (DataType.STRING_ARRAY, ("ABC", "", "hello")),
        (DataType.DATETIME_ARRAY, (utc(T0), utc(T0 + 1000))),
    ]
    metrics = [
        sp.Metric(
            timestamp=T0 + i,
            name=f"Types/{SPEC_NAMES[dt]}",
            datatype=dt,
            value=v,
            alias=100 + i,
        )
        for i, (dt, v) in enumerate(values)
    ]
    metrics.append(
        sp.Metric(timestamp=T0, name="Types/Null", datatype=DataType.DOUBLE, alias=99, is_null=True)
    )
    return metrics


def encode(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    birth_metrics = every_type_metrics()
    cases = {
        "nbirth_every_type": sp.NBirth(timestamp=T0, seq=0, metrics=tuple(birth_metrics)),
        "ddata_aliases": sp.DData(
            timestamp=T0 + 5000,
            seq=255,
            metrics=(
                sp.Metric(timestamp=T0 + 4000, name=None, alias=101, datatype=DataType.INT16, value=-2),
                sp.Metric(timestamp=T0 + 4500, name=None, alias=109, datatype=DataType.DOUBLE, value=-0.125),
                sp.Metric(
                    timestamp=T0 + 1000,
                    name=None,
                    alias=106,
                    datatype=DataType.UINT32,
                    value=7,
                    is_historical=True,
                ),
            ),
        ),
        "dcmd_write": sp.DCmd(
            timestamp=T0 + 9000,
            metrics=(sp.Metric(timestamp=T0 + 9000, name="Tank/Setpoint", datatype=DataType.FLOAT, value=42.5),),
        ),
    }
    birth = cases["nbirth_every_type"]
    for name, payload in cases.items():
        include = name != "ddata_aliases"  # report by exception drops datatypes, as edge nodes do
        raw = payload.encode(include_dtypes=include)
        (out / f"{name}.bin").write_bytes(raw)
        if name == "ddata_aliases":
            # What a host sees: names and datatypes come from the birth.
            payload = sp.DData.decode(raw, birth=birth)
        (out / f"{name}.json").write_text(json.dumps(payload_json(payload), indent=1))


def decode(path: pathlib.Path, kind: str, birth_path) -> None:
    cls = KINDS[kind]
    birth = None
    if birth_path is not None:
        birth = sp.NBirth.decode(pathlib.Path(birth_path).read_bytes())
    payload = cls.decode(path.read_bytes(), birth=birth)
    print(json.dumps(payload_json(payload)))


def main(argv: list) -> int:
    if len(argv) >= 2 and argv[0] == "encode":
        encode(pathlib.Path(argv[1]))
        return 0
    if len(argv) in (3, 4) and argv[0] == "decode" and argv[2] in KINDS:
        decode(pathlib.Path(argv[1]), argv[2], argv[3] if len(argv) == 4 else None)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
