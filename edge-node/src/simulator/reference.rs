//! The reference plant of the link-economy benchmark and tests: 1,000 tags on 10 devices
//! (Modbus units 1..=10 of one server), scanned at 1 Hz. Per device:
//!
//! - 80 analog values (f32 input registers): random walks of up to ±0.1 per 100 ms tick,
//!   reported past a deadband of 0.45, so that about 10% of them report each second;
//! - 10 counters (u32 input registers) counting 0.1 per second: one change in 10 s each;
//! - 10 status bits (discrete inputs): square waves of 5 to 20 minutes.
//!
//! About 90 samples a second leave the 1,000 tags by exception. Both halves come from
//! here: the plant-sim configuration and the edge node's `[modbus]` tables.

use std::fmt::Write;

/// Devices (Modbus units 1..=DEVICES).
pub const DEVICES: usize = 10;
/// Analog values per device.
pub const ANALOGS: usize = 80;
/// Counters per device.
pub const COUNTERS: usize = 10;
/// Status bits per device.
pub const BITS: usize = 10;
/// Tags per device.
pub const TAGS_PER_DEVICE: usize = ANALOGS + COUNTERS + BITS;
/// The analogs' deadband (engineering units).
pub const DEADBAND: f64 = 0.45;
/// Largest random-walk step per simulator tick.
pub const STEP: f64 = 0.1;

/// The plant-sim configuration (TOML) of the reference plant.
pub fn plant_sim_toml() -> String {
    let mut t = String::from("tick_ms = 100\n");
    for unit in 1..=DEVICES {
        let _ = write!(
            t,
            "\n[[unit]]\nid = {unit}\nname = \"line-{unit:02}\"\n\
             sizes = {{ coils = 8, discrete_inputs = {BITS}, holding_registers = 8, input_registers = {} }}\n",
            2 * (ANALOGS + COUNTERS)
        );
        for a in 0..ANALOGS {
            let _ = write!(
                t,
                "\n[[unit.signal]]\nname = \"a{a:02}\"\ntable = \"input_registers\"\naddress = {}\n\
                 type = \"f32\"\nkind = \"random_walk\"\nmin = 0.0\nmax = 100.0\nstep = {STEP}\n\
                 start = {}\nseed = {}\n",
                2 * a,
                20 + a % 60,
                unit * 1000 + a
            );
        }
        for c in 0..COUNTERS {
            let _ = write!(
                t,
                "\n[[unit.signal]]\nname = \"c{c}\"\ntable = \"input_registers\"\naddress = {}\n\
                 type = \"u32\"\nkind = \"counter\"\nstart = {}\nrate = 0.1\n",
                2 * (ANALOGS + c),
                (unit * 7 + c) as f64 + 0.05 * c as f64
            );
        }
        for b in 0..BITS {
            let _ = write!(
                t,
                "\n[[unit.signal]]\nname = \"s{b}\"\ntable = \"discrete_inputs\"\naddress = {b}\n\
                 kind = \"square\"\nperiod_s = {}.0\n",
                300 + 100 * ((unit + b) % 10)
            );
        }
    }
    t
}

/// The edge node's `[modbus]` tables for the reference plant served at `host:port`.
pub fn edge_modbus_toml(host: &str, port: u16) -> String {
    let mut t =
        String::from("[modbus]\n\n[[modbus.scan_classes]]\nname = \"normal\"\nperiod_ms = 1000\n");
    for unit in 1..=DEVICES {
        let _ = write!(
            t,
            "\n[[modbus.devices]]\nname = \"line-{unit:02}\"\nhost = \"{host}\"\nport = {port}\nunit_id = {unit}\n"
        );
        for a in 0..ANALOGS {
            let _ = write!(
                t,
                "\n[[modbus.devices.tags]]\nname = \"a{a:02}\"\naddress = \"{}\"\ntype = \"f32\"\n\
                 scan_class = \"normal\"\ndeadband = {DEADBAND}\n",
                30_001 + 2 * a
            );
        }
        for c in 0..COUNTERS {
            let _ = write!(
                t,
                "\n[[modbus.devices.tags]]\nname = \"c{c}\"\naddress = \"{}\"\ntype = \"u32\"\n\
                 scan_class = \"normal\"\n",
                30_001 + 2 * (ANALOGS + c)
            );
        }
        for b in 0..BITS {
            let _ = write!(
                t,
                "\n[[modbus.devices.tags]]\nname = \"s{b}\"\naddress = \"{}\"\ntype = \"bool\"\n\
                 scan_class = \"normal\"\n",
                10_001 + b
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimulatorConfig;

    #[test]
    fn both_halves_load_and_agree_on_the_tag_count() {
        let plant = SimulatorConfig::from_toml_str(&plant_sim_toml(), "reference").unwrap();
        assert_eq!(plant.units.len(), DEVICES);
        let modbus = crate::modbus::ModbusConfig::from_toml(
            &edge_modbus_toml("127.0.0.1", 502),
            "reference",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(modbus.tags.len(), DEVICES * TAGS_PER_DEVICE);
    }
}
