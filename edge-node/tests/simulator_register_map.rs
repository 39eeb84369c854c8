//! The register map documented in `src/simulator/README.md` is the built-in plant's map:
//! every documented row exists in the plant and every point of the plant is documented.

use std::collections::BTreeSet;

use edge_node::simulator::{PointConfig, SimulatorConfig, WordOrder};

/// `unit | table | address | type | order | scale | name`, as written in the README.
type Row = (String, String, String, String, String, String, String);

fn order_name(order: WordOrder, words: usize) -> &'static str {
    if words == 1 {
        return "-";
    }
    match order {
        WordOrder::Abcd => "abcd",
        WordOrder::Cdab => "cdab",
        WordOrder::Badc => "badc",
        WordOrder::Dcba => "dcba",
    }
}

fn row(unit: u8, name: &str, point: &PointConfig) -> Row {
    let data_type = point.data_type.unwrap_or(if point.table.is_bit() {
        edge_node::simulator::DataType::Bool
    } else {
        edge_node::simulator::DataType::U16
    });
    (
        unit.to_string(),
        point.table.name().to_owned(),
        point.address.to_string(),
        data_type.name().to_owned(),
        order_name(point.order, data_type.word_count()).to_owned(),
        point.scale.unwrap_or(1.0).to_string(),
        name.to_owned(),
    )
}

fn plant_rows() -> BTreeSet<Row> {
    let config = SimulatorConfig::default_plant();
    let mut rows = BTreeSet::new();
    for unit in &config.units {
        for signal in &unit.signals {
            let point = PointConfig {
                table: signal.table,
                address: signal.address,
                data_type: signal.data_type,
                order: signal.order,
                scale: signal.scale,
            };
            rows.insert(row(unit.id, &signal.name, &point));
        }
        for tank in &unit.tanks {
            let points = [
                ("level", &tank.level),
                ("inflow", &tank.inflow),
                ("outflow", &tank.outflow),
                ("pump_running", &tank.pump_running),
                ("inlet_valve", &tank.inlet_valve),
                ("pump_mode", &tank.pump_mode),
                ("start_level", &tank.start_level),
                ("stop_level", &tank.stop_level),
            ];
            for (key, point) in points {
                if let Some(point) = point {
                    rows.insert(row(unit.id, &format!("{}.{key}", tank.name), point));
                }
            }
        }
    }
    rows
}

fn readme_rows() -> BTreeSet<Row> {
    let readme = include_str!("../src/simulator/README.md");
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .strip_prefix('|')?
                .split('|')
                .map(str::trim)
                .collect();
            // Map rows start with a unit number; header and rule rows do not.
            cells.first()?.parse::<u8>().ok()?;
            let name = cells.get(6)?.trim_matches('`');
            Some((
                cells[0].to_owned(),
                cells[1].to_owned(),
                cells[2].to_owned(),
                cells[3].to_owned(),
                cells[4].to_owned(),
                cells[5].to_owned(),
                name.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn readme_register_map_matches_the_built_in_plant() {
    let plant = plant_rows();
    let readme = readme_rows();
    let undocumented: Vec<_> = plant.difference(&readme).collect();
    let stale: Vec<_> = readme.difference(&plant).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "README register map out of step.\nin the plant, not in the README: {undocumented:#?}\nin the README, not in the plant: {stale:#?}"
    );
}
