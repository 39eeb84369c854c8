//! Simulator configuration: the shipped files load, bad files are refused with errors naming
//! the unit, the signal or tank and the key, and the benchmark map covers what it promises.

use std::path::PathBuf;

use edge_node::simulator::{
    BENCH_BLOCK_WORDS, DataType, SimulatorConfig, Table, WaveKind, WordOrder,
};

fn workspace_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The error text of a configuration built from `text`.
fn refusal(text: &str) -> String {
    match SimulatorConfig::from_toml_str(text, "test.toml") {
        Ok(config) => panic!("accepted an invalid configuration: {config:?}"),
        Err(error) => error.to_string(),
    }
}

const UNIT: &str = "[[unit]]\nid = 4\nsizes = { coils = 8, discrete_inputs = 8, holding_registers = 16, input_registers = 16 }\n";

fn with_unit(rest: &str) -> String {
    format!("{UNIT}{rest}")
}

#[test]
fn the_example_file_loads_and_builds() {
    let config = SimulatorConfig::load(&workspace_file("config/plant-sim.example.toml")).unwrap();
    let (plant, models) = config.build().unwrap();
    assert_eq!(plant.unit_ids(), [10, 11]);
    assert_eq!(models[0].signals().len(), 8);
    assert_eq!(models[0].tanks().len(), 1);
    // The configured holes answer "illegal data address".
    let bank = plant.bank(10).unwrap();
    assert!(bank.read_words(Table::HoldingRegisters, 89, 2).is_err());
    assert!(bank.read_bits(Table::Coils, 31, 1).is_err());
}

#[test]
fn the_default_plant_has_three_units_with_tanks_and_typed_signals() {
    let config = SimulatorConfig::default_plant();
    let (plant, models) = config.build().unwrap();
    assert_eq!(plant.unit_ids(), [1, 2, 3]);
    assert_eq!(models[0].tanks().len(), 2);
    let types: std::collections::HashSet<DataType> = models
        .iter()
        .flat_map(|m| m.signals().iter().map(|s| s.point.data_type))
        .collect();
    for wanted in [
        DataType::Bool,
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::F32,
        DataType::F64,
    ] {
        assert!(types.contains(&wanted), "default plant lacks {wanted:?}");
    }
    let orders: std::collections::HashSet<WordOrder> = models
        .iter()
        .flat_map(|m| m.signals().iter().map(|s| s.point.order))
        .collect();
    assert_eq!(orders.len(), 4, "every word order appears");
}

#[test]
fn parse_errors_name_the_file_and_the_key() {
    let error = refusal(&with_unit(
        "[[unit.signal]]\nname = \"a\"\ntable = \"input_registers\"\naddress = 0\nkind = \"sine\"\namplitud = 1.0\n",
    ));
    assert!(
        error.starts_with("test.toml:9:1: unit[0].signal[0].amplitud: unknown field `amplitud`"),
        "{error}"
    );

    let error = refusal("[[unit]]\nid = 300\n");
    assert!(error.starts_with("test.toml:2:6: unit[0].id: "), "{error}");

    let error = refusal(&with_unit(
        "[[unit.signal]]\nname = \"a\"\ntable = \"input_registers\"\naddress = 0\nkind = \"sawtooth\"\n",
    ));
    assert!(
        error.starts_with("test.toml:8:8: unit[0].signal[0].kind: unknown variant `sawtooth`"),
        "{error}"
    );
}

#[test]
fn semantic_errors_name_unit_signal_and_key() {
    let cases = [
        (
            "[[unit.signal]]\nname = \"level\"\ntable = \"input_registers\"\naddress = 0\nkind = \"sine\"\namplitude = 1.0\n",
            "test.toml: unit[0].signal[0].period_s: required by kind \"sine\"",
        ),
        (
            "[[unit.signal]]\nname = \"level\"\ntable = \"input_registers\"\naddress = 0\nkind = \"ramp\"\nmin = 0.0\nmax = 1.0\nperiod_s = 1.0\namplitude = 3.0\n",
            "test.toml: unit[0].signal[0].amplitude: does not apply to kind \"ramp\"",
        ),
        (
            "[[unit.signal]]\nname = \"level\"\ntable = \"input_registers\"\naddress = 0\nkind = \"ramp\"\nmin = 5.0\nmax = 1.0\nperiod_s = 1.0\n",
            "test.toml: unit[0].signal[0].max: must be greater than min",
        ),
        (
            "[[unit.signal]]\nname = \"p\"\ntable = \"input_registers\"\naddress = 0\nkind = \"sine\"\namplitude = 1.0\nperiod_s = 0.0\n",
            "test.toml: unit[0].signal[0].period_s: must be greater than 0",
        ),
        (
            "[[unit.signal]]\nname = \"big\"\ntable = \"input_registers\"\naddress = 15\ntype = \"f32\"\nkind = \"constant\"\nvalue = 1.0\n",
            "test.toml: unit[0].signal[0].address: f32 input_registers needs 15..17 but the table holds 16",
        ),
        (
            "[[unit.signal]]\nname = \"flag\"\ntable = \"coils\"\naddress = 0\ntype = \"u16\"\nkind = \"constant\"\nvalue = 1.0\n",
            "test.toml: unit[0].signal[0].type: coils holds single bits",
        ),
        (
            "[[unit.signal]]\nname = \"c\"\ntable = \"coils\"\naddress = 0\nkind = \"counter\"\nrate = 1.0\n",
            "test.toml: unit[0].signal[0].type: a counter needs a numeric type",
        ),
        (
            "[[unit.signal]]\nname = \"a\"\ntable = \"holding_registers\"\naddress = 0\ntype = \"u32\"\nkind = \"constant\"\nvalue = 1.0\n\
             [[unit.signal]]\nname = \"b\"\ntable = \"holding_registers\"\naddress = 1\nkind = \"constant\"\nvalue = 1.0\n",
            "test.toml: unit[0].signal[1].address: holding_registers 1 is already used by unit[0].signal[0]",
        ),
        (
            "[[unit.signal]]\nname = \"a\"\ntable = \"coils\"\naddress = 0\nkind = \"square\"\nperiod_s = 1.0\nduty = 1.5\n",
            "test.toml: unit[0].signal[0].duty: must be between 0 and 1",
        ),
        (
            "[[unit.tank]]\nname = \"t\"\narea_m2 = 1.0\nheight_m = 2.0\ninflow_m3_per_h = 1.0\npump_rate_m3_per_h = 2.0\nstart_level_m = 1.0\nstop_level_m = 1.5\nlevel = { table = \"input_registers\", address = 0 }\n",
            "test.toml: unit[0].tank[0].stop_level_m: must be below start_level_m",
        ),
        (
            "[[unit.tank]]\nname = \"t\"\narea_m2 = 1.0\nheight_m = 2.0\ninflow_m3_per_h = 1.0\npump_rate_m3_per_h = 2.0\nstart_level_m = 1.5\nstop_level_m = 0.5\n",
            "test.toml: unit[0].tank[0].level: required",
        ),
        (
            "[[unit.tank]]\nname = \"t\"\narea_m2 = 1.0\nheight_m = 2.0\ninflow_m3_per_h = 1.0\npump_rate_m3_per_h = 2.0\nstart_level_m = 1.5\nstop_level_m = 0.5\nlevel = { table = \"input_registers\", address = 0 }\npump_mode = { table = \"input_registers\", address = 1 }\n",
            "test.toml: unit[0].tank[0].pump_mode.table: input_registers is read-only over Modbus",
        ),
        (
            "[[unit.tank]]\nname = \"t\"\narea_m2 = 0.0\nheight_m = 2.0\ninflow_m3_per_h = 1.0\npump_rate_m3_per_h = 2.0\nstart_level_m = 1.5\nstop_level_m = 0.5\nlevel = { table = \"input_registers\", address = 0 }\n",
            "test.toml: unit[0].tank[0].area_m2: must be greater than 0",
        ),
        (
            "invalid = [{ table = \"coils\", start = 6, count = 4 }]\n",
            "test.toml: unit[0].invalid[0]: coils 6..10 must be non-empty and inside the table (size 8)",
        ),
    ];
    for (rest, expected) in cases {
        let error = refusal(&with_unit(rest));
        assert!(
            error.contains(expected),
            "expected `{expected}`\n     got `{error}`"
        );
    }
}

#[test]
fn unit_level_errors_name_the_unit() {
    let twice = format!("{UNIT}{UNIT}");
    assert_eq!(
        refusal(&twice),
        "test.toml: unit[1].id: unit 4 is defined more than once"
    );
    assert!(
        refusal("[[unit]]\nid = 0\n")
            .starts_with("test.toml: unit[0].id: 0 is the broadcast address")
    );
    assert_eq!(
        refusal("[[unit]]\nid = 1\nsizes = { holding_registers = 70000 }\n"),
        "test.toml: unit[0].sizes.holding_registers: at most 65536"
    );
    assert_eq!(
        refusal("tick_ms = 0\n[[unit]]\nid = 1\n"),
        "test.toml: tick_ms: must be at least 1"
    );
    assert_eq!(
        refusal("tick_ms = 10\n"),
        "test.toml: unit: at least one unit is required"
    );
}

#[test]
fn every_unit_signal_and_tank_is_checked() {
    let text = format!(
        "tick_ms = 0\n{UNIT}[[unit.signal]]\nname = \"a\"\ntable = \"input_registers\"\naddress = 0\nkind = \"sine\"\namplitude = 1.0\n\
         [[unit.signal]]\nname = \"b\"\ntable = \"coils\"\naddress = 0\ntype = \"u16\"\nkind = \"constant\"\nvalue = 1.0\n\
         [[unit.tank]]\nname = \"t\"\narea_m2 = 0.0\nheight_m = 2.0\ninflow_m3_per_h = 1.0\npump_rate_m3_per_h = 2.0\nstart_level_m = 1.5\nstop_level_m = 0.5\nlevel = {{ table = \"input_registers\", address = 4 }}\n\
         [[unit]]\nid = 0\n"
    );
    let error = SimulatorConfig::from_toml_str(&text, "test.toml").unwrap_err();
    assert_eq!(
        error.keys(),
        [
            "tick_ms",
            "unit[0].signal[0].period_s",
            "unit[0].signal[1].type",
            "unit[0].tank[0].area_m2",
            "unit[1].id",
        ],
        "{error}"
    );
    assert!(
        error
            .to_string()
            .lines()
            .all(|l| l.starts_with("test.toml: ")),
        "{error}"
    );
}

#[test]
fn missing_files_are_reported_with_their_path() {
    let error = SimulatorConfig::load(&PathBuf::from("/nonexistent/plant.toml")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/plant.toml: cannot read: "),
        "{error}"
    );
}

#[test]
fn bench_map_covers_every_register_with_mixed_types() {
    let config = SimulatorConfig::bench_map(10, 1000).unwrap();
    assert_eq!(config.units.len(), 10);
    let (plant, models) = config.build().unwrap();
    assert_eq!(plant.unit_ids(), (1..=10).collect::<Vec<u8>>());
    for (unit, model) in config.units.iter().zip(&models) {
        assert_eq!(unit.sizes.holding_registers, 1000);
        for (table, prefix) in [
            (Table::HoldingRegisters, "hr_"),
            (Table::InputRegisters, "ir_"),
        ] {
            let words: usize = unit
                .signals
                .iter()
                .filter(|s| s.table == table)
                .map(|s| s.data_type.unwrap().word_count())
                .sum();
            assert_eq!(words, 1000, "every word of {table} carries a signal");
            assert!(
                unit.signals
                    .iter()
                    .filter(|s| s.table == table)
                    .all(|s| s.name.starts_with(prefix))
            );
        }
        assert_eq!(model.signals().len(), unit.signals.len());
    }
    let first = &config.units[0].signals;
    let block: Vec<(u16, DataType, WordOrder, WaveKind)> = first
        .iter()
        .take(5)
        .map(|s| (s.address, s.data_type.unwrap(), s.order, s.kind))
        .collect();
    assert_eq!(
        block,
        [
            (0, DataType::U16, WordOrder::Abcd, WaveKind::Counter),
            (1, DataType::I16, WordOrder::Abcd, WaveKind::Sine),
            (2, DataType::U32, WordOrder::Abcd, WaveKind::Counter),
            (4, DataType::F32, WordOrder::Abcd, WaveKind::Sine),
            (6, DataType::F32, WordOrder::Cdab, WaveKind::Ramp),
        ]
    );
    assert_eq!(usize::from(first[5].address), BENCH_BLOCK_WORDS);
}

#[test]
fn bench_map_fills_a_partial_last_block_with_single_words() {
    let config = SimulatorConfig::bench_map(1, 12).unwrap();
    let tail: Vec<(u16, DataType)> = config.units[0]
        .signals
        .iter()
        .filter(|s| s.table == Table::HoldingRegisters && s.address >= 8)
        .map(|s| (s.address, s.data_type.unwrap()))
        .collect();
    assert_eq!(
        tail,
        [
            (8, DataType::U16),
            (9, DataType::U16),
            (10, DataType::U16),
            (11, DataType::U16)
        ]
    );
    assert!(SimulatorConfig::bench_map(0, 10).is_err());
    assert!(SimulatorConfig::bench_map(1, 70_000).is_err());
}
