//! Every data type in every byte/word order, read and written over Modbus TCP against the
//! plant simulator's server. Expected registers are laid out from the order's name, not by
//! the engine's codec.

use std::sync::Arc;

use edge_node::modbus::{Acquisition, Event, Quality, Value, WriteError};
use edge_node::simulator::{BankSizes, ExceptionRule, Plant, PlantServer, Table as SimTable};
use edge_node_testkit::modbus::{WAIT, layout, site, wait_for, wait_online};
use system_tests::config::edge::{Device, Modbus, ScanClass, Tag};
use tokio_modbus::ExceptionCode;

/// Type name, value read, value written, big-endian bytes of both.
type Case = (&'static str, Value, Value, Vec<u8>, Vec<u8>);

fn cases() -> Vec<Case> {
    vec![
        (
            "i16",
            Value::I16(-12345),
            Value::I16(321),
            (-12345i16).to_be_bytes().to_vec(),
            321i16.to_be_bytes().to_vec(),
        ),
        (
            "u16",
            Value::U16(0xBEEF),
            Value::U16(0x1234),
            0xBEEFu16.to_be_bytes().to_vec(),
            0x1234u16.to_be_bytes().to_vec(),
        ),
        (
            "i32",
            Value::I32(-123_456_789),
            Value::I32(987_654_321),
            (-123_456_789i32).to_be_bytes().to_vec(),
            987_654_321i32.to_be_bytes().to_vec(),
        ),
        (
            "u32",
            Value::U32(0xDEAD_BEEF),
            Value::U32(0xCAFE_BABE),
            0xDEAD_BEEFu32.to_be_bytes().to_vec(),
            0xCAFE_BABEu32.to_be_bytes().to_vec(),
        ),
        (
            "i64",
            Value::I64(-1_234_567_890_123_456_789),
            Value::I64(-42),
            (-1_234_567_890_123_456_789i64).to_be_bytes().to_vec(),
            (-42i64).to_be_bytes().to_vec(),
        ),
        (
            "u64",
            Value::U64(0x0123_4567_89AB_CDEF),
            Value::U64(0xFEDC_BA98_7654_3210),
            0x0123_4567_89AB_CDEFu64.to_be_bytes().to_vec(),
            0xFEDC_BA98_7654_3210u64.to_be_bytes().to_vec(),
        ),
        (
            "f32",
            Value::F32(-1234.5),
            Value::F32(0.15625),
            (-1234.5f32).to_be_bytes().to_vec(),
            0.15625f32.to_be_bytes().to_vec(),
        ),
        (
            "f64",
            Value::F64(std::f64::consts::PI),
            Value::F64(-2.5e-10),
            std::f64::consts::PI.to_be_bytes().to_vec(),
            (-2.5e-10f64).to_be_bytes().to_vec(),
        ),
    ]
}

/// The order names for a value of `bytes` bytes.
fn orders(bytes: usize) -> &'static [&'static str] {
    match bytes {
        2 => &["AB", "BA"],
        4 => &["ABCD", "BADC", "CDAB", "DCBA"],
        _ => &["ABCDEFGH", "BADCFEHG", "GHEFCDAB", "HGFEDCBA"],
    }
}

fn string_registers(order: &str, s: &str, registers: usize) -> Vec<u16> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.resize(registers * 2, 0);
    bytes
        .chunks(2)
        .map(|p| {
            if order == "BADC" {
                u16::from_be_bytes([p[1], p[0]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_order_reads_and_writes_over_tcp() {
    let mut plant = Plant::new();
    plant.add_unit(1, BankSizes::uniform(1000)).unwrap();
    let server = PlantServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(plant))
        .await
        .unwrap();
    let bank = Arc::clone(server.bank(1).unwrap());

    let mut dut = Device::tcp("dut", server.local_addr().port(), 1);
    // (tag name, address, order, expected read, value to write, expected registers after write)
    let mut numeric = Vec::new();
    let mut address = 0u16;
    for (ty, read, written, read_be, written_be) in cases() {
        for order in orders(read_be.len()) {
            let name = format!("{ty}_{order}");
            dut = dut.tag(
                Tag::new(&name, "holding", address.into(), ty)
                    .order(order)
                    .writable(),
            );
            bank.write_words(
                SimTable::HoldingRegisters,
                address,
                &layout(order, &read_be),
            )
            .unwrap();
            numeric.push((
                name,
                address,
                read.clone(),
                written.clone(),
                layout(order, &written_be),
            ));
            address += (read_be.len() / 2) as u16;
        }
    }
    for order in ["ABCD", "BADC"] {
        dut = dut.tag(Tag {
            length: Some(4),
            ..Tag::new(&format!("s_{order}"), "holding", address.into(), "string")
                .order(order)
                .writable()
        });
        bank.write_words(
            SimTable::HoldingRegisters,
            address,
            &string_registers(order, "PUMP-07", 4),
        )
        .unwrap();
        numeric.push((
            format!("s_{order}"),
            address,
            Value::String("PUMP-07".into()),
            Value::String("VALVE2".into()),
            string_registers(order, "VALVE2", 4),
        ));
        address += 4;
    }
    // Bools: a coil, a discrete input (1-based notation), bit 5 of a holding register.
    dut = dut
        .tag(Tag::numbered("coil", "00008", "bool").writable())
        .tag(Tag::numbered("input", "10004", "bool"))
        .tag(
            Tag {
                bit: Some(5),
                ..Tag::new("bit5", "holding", 900, "bool")
            }
            .writable(),
        );
    bank.write_bits(SimTable::Coils, 7, &[true]).unwrap();
    bank.write_bits(SimTable::DiscreteInputs, 3, &[true])
        .unwrap();
    bank.set_holding_register(900, 0b1000_0000_0010_0001)
        .unwrap();

    let modbus = Modbus {
        scan_classes: vec![ScanClass::new("fast", 100.0)],
        devices: vec![dut],
        ..Modbus::default()
    };
    let site = site(&modbus.to_toml());
    let (acq, mut events) = Acquisition::start(site, Default::default());
    let handle = acq.handle();
    let online = wait_online(&mut events).await;
    assert_eq!(online.samples.len(), handle.site().tags.len());
    let value_of = |name: &str| {
        let id = handle.tag_id("dut", name).unwrap();
        let s = online.samples.iter().find(|s| s.tag == id).unwrap();
        assert_eq!(s.quality, Quality::Good, "{name}");
        s.value.clone()
    };
    for (name, _, read, _, _) in &numeric {
        assert_eq!(&value_of(name), read, "read {name}");
    }
    assert_eq!(value_of("coil"), Value::Bool(true));
    assert_eq!(value_of("input"), Value::Bool(true));
    assert_eq!(value_of("bit5"), Value::Bool(true));

    for (name, address, _, written, registers) in &numeric {
        let id = handle.tag_id("dut", name).unwrap();
        tokio::time::timeout(WAIT, handle.write(id, written.clone()))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
        let got = bank
            .read_words(SimTable::HoldingRegisters, *address, registers.len())
            .unwrap();
        assert_eq!(&got, registers, "registers after writing {name}");
    }
    // Coil with 05; bit of register with read-modify-write keeping the other bits.
    handle
        .write(handle.tag_id("dut", "coil").unwrap(), Value::Bool(false))
        .await
        .unwrap();
    assert!(!bank.read_bits(SimTable::Coils, 7, 1).unwrap()[0]);
    handle
        .write(handle.tag_id("dut", "bit5").unwrap(), Value::Bool(false))
        .await
        .unwrap();
    assert_eq!(bank.holding_register(900).unwrap(), 0b1000_0000_0000_0001);
    handle
        .write(handle.tag_id("dut", "bit5").unwrap(), Value::Bool(true))
        .await
        .unwrap();
    assert_eq!(bank.holding_register(900).unwrap(), 0b1000_0000_0010_0001);

    // Refusals happen before anything is sent.
    let input = handle.tag_id("dut", "input").unwrap();
    let e = handle.write(input, Value::Bool(true)).await.unwrap_err();
    assert!(
        matches!(e, WriteError::Refused { .. }) && e.to_string().contains("read-only"),
        "{e}"
    );
    let u16_tag = handle.tag_id("dut", "u16_AB").unwrap();
    let e = handle.write(u16_tag, Value::I32(70_000)).await.unwrap_err();
    assert!(e.to_string().contains("outside the range"), "{e}");

    // Written values come back through polling as data.
    let f32_tag = handle.tag_id("dut", "f32_CDAB").unwrap();
    let seen = wait_for(&mut events, |e| match e {
        Event::Data(r) => r
            .samples
            .iter()
            .find(|s| s.tag == f32_tag)
            .map(|s| s.value.clone()),
        _ => None,
    })
    .await;
    assert_eq!(seen, Value::F32(0.15625));
    acq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_tags_write_raw_and_devices_without_06_use_16_and_15() {
    let mut plant = Plant::new();
    plant.add_unit(3, BankSizes::uniform(100)).unwrap();
    // This device refuses 05 and 06: writes must go out as 15 and 16.
    for function in [5, 6] {
        plant
            .add_exception(
                3,
                ExceptionRule {
                    function: Some(function),
                    start: 0,
                    count: 65_536,
                    code: ExceptionCode::IllegalFunction,
                },
            )
            .unwrap();
    }
    let server = PlantServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(plant))
        .await
        .unwrap();
    let bank = Arc::clone(server.bank(3).unwrap());
    bank.set_holding_register(0, 2000).unwrap();
    let level = Tag {
        raw_min: Some(0.0),
        raw_max: Some(4000.0),
        eng_min: Some(0.0),
        eng_max: Some(100.0),
        ..Tag::numbered("level", "40001", "u16").units("%").writable()
    };
    let tank = Device {
        use_multiple_writes: Some(true),
        ..Device::tcp("tank", server.local_addr().port(), 3)
            .tag(level)
            .tag(Tag::numbered("pump", "00001", "bool").writable())
    };
    let modbus = Modbus {
        scan_classes: vec![ScanClass::new("s", 200.0)],
        devices: vec![tank],
        ..Modbus::default()
    };
    let (acq, mut events) = Acquisition::start(site(&modbus.to_toml()), Default::default());
    let h = acq.handle();
    let level = h.tag_id("tank", "level").unwrap();
    let online = wait_online(&mut events).await;
    let s = online.samples.iter().find(|s| s.tag == level).unwrap();
    assert_eq!(s.value, Value::F64(50.0));
    h.write(level, Value::F64(12.5)).await.unwrap();
    assert_eq!(bank.holding_register(0).unwrap(), 500);
    let e = h.write(level, Value::F64(120.0)).await.unwrap_err();
    assert!(e.to_string().contains("engineering range"), "{e}");
    h.write(h.tag_id("tank", "pump").unwrap(), Value::Bool(true))
        .await
        .unwrap();
    assert!(bank.read_bits(SimTable::Coils, 0, 1).unwrap()[0]);
    acq.shutdown().await;
}
