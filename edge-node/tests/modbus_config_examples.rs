//! The example configuration and CSV tag list in `config/` load and validate, so they
//! never rot; the CSV survives an export/import round trip.

use std::path::PathBuf;

use edge_node::modbus::config::Transport;
use edge_node::modbus::csv::{export_tags, import_tags};
use edge_node::modbus::tag::Deadband;
use edge_node::modbus::{ByteOrder, DataType, ModbusConfig, Table};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/edge-node.example.toml")
}

#[test]
fn example_config_and_csv_load() {
    let (config, site) = ModbusConfig::load(&example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(site.scan_classes.len(), 3);
    assert_eq!(site.devices.len(), 6);
    let tag = |device: &str, name: &str| {
        let d = site.devices.iter().position(|d| d.name == device).unwrap();
        site.tags
            .iter()
            .find(|t| t.device == d && t.name == name)
            .unwrap_or_else(|| panic!("{device}/{name}"))
    };
    let run_hours = tag("boiler", "run_hours");
    assert_eq!(
        (run_hours.table, run_hours.address),
        (Table::HoldingRegister, 300)
    );
    assert_eq!(run_hours.order, ByteOrder::CDAB);
    let pressure = tag("boiler", "pressure");
    assert_eq!(pressure.deadband, Deadband::Percent(0.5));
    // From the CSV file.
    let totaliser = tag("flow-1", "totaliser");
    assert_eq!(
        (totaliser.data_type, totaliser.order),
        (DataType::U64, ByteOrder::DCBA)
    );
    let alarm = tag("flow-2", "alarm");
    assert_eq!(alarm.bit, Some(0));
    // RTU slaves share their bus link; TCP devices each have their own.
    let flow1 = &site.devices[site
        .devices
        .iter()
        .position(|d| d.name == "flow-1")
        .unwrap()];
    let flow2 = &site.devices[site
        .devices
        .iter()
        .position(|d| d.name == "flow-2")
        .unwrap()];
    assert_eq!(flow1.link, flow2.link);
    assert!(matches!(
        site.links[flow1.link].transport,
        Transport::Rtu(_)
    ));
    assert!(
        site.devices
            .iter()
            .find(|d| d.name == "meter-b")
            .unwrap()
            .use_multiple_writes
    );

    let mut out = Vec::new();
    export_tags(&config, &mut out).unwrap();
    let rows = import_tags(out.as_slice(), "exported.csv").unwrap();
    let mut again = ModbusConfig::from_toml(
        &std::fs::read_to_string(example()).unwrap(),
        "edge-node.example.toml",
    )
    .unwrap();
    for d in &mut again.devices {
        d.tags.clear();
    }
    again.tag_files.clear();
    again.attach_rows(rows).unwrap();
    assert_eq!(again.validate().unwrap().tags.len(), site.tags.len());
}

#[test]
fn example_config_store_section_is_accepted() {
    // Only the site files the example names under /etc are missing here; a [store]
    // problem would be listed among them (or refuse the whole document).
    let Err(problems) = edge_node::Config::load(&example()) else {
        panic!("expected only the missing /etc files");
    };
    assert_eq!(
        problems.keys(),
        ["mqtt.password_file", "mqtt.servers[0].ca_file"]
    );
    let file = example().display().to_string();
    assert!(
        problems
            .problems()
            .iter()
            .all(|p| p.file.as_deref() == Some(file.as_str()))
    );
}
