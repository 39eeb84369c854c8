//! A line-based control surface to inject faults into a running simulator from another
//! process (the binary reads it on stdin). One command per line; every command gets one
//! reply line: `ok`, `ok <data>` or `error: <why>`.
//!
//! ```text
//! delay UNIT MS                          answer UNIT's requests MS milliseconds late (0 = off)
//! exception UNIT FC|any ADDR COUNT CODE  answer exception CODE to FC touching ADDR..ADDR+COUNT
//! silent UNIT on|off                     UNIT stops / resumes answering
//! unknown-unit silent|gateway            unknown unit ids: no answer, or exception 0x0B
//! clear [UNIT]                           remove the faults of UNIT (or of every unit)
//! drop                                   close every client connection now
//! stop | start | restart                 close the port (refuse connections) / reopen it / both
//! reject on|off                          accept new connections and close them at once
//! set UNIT TABLE ADDR VALUE              write one coil (0/1) or register (0..=65535)
//! get UNIT TABLE ADDR [COUNT]            read raw values (coils as 0/1)
//! status                                 listening flag and connection count
//! help                                   this list
//! ```
//!
//! Numbers are decimal or `0x` hexadecimal. TABLE is `coils`, `discrete_inputs`,
//! `holding_registers`, `input_registers` or `co`, `di`, `hr`, `ir`.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio_modbus::ExceptionCode;

use super::bank::Table;
use super::plant::{ExceptionRule, UnitId, UnknownUnitReply};
use super::server::PlantServer;

pub const HELP: &str = "commands: delay UNIT MS | exception UNIT FC|any ADDR COUNT CODE | \
silent UNIT on|off | unknown-unit silent|gateway | clear [UNIT] | drop | stop | start | restart | \
reject on|off | set UNIT TABLE ADDR VALUE | get UNIT TABLE ADDR [COUNT] | status | help";

/// Most values one `get` returns.
const MAX_GET: usize = 125;

/// A parsed control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Delay {
        unit: UnitId,
        delay: Duration,
    },
    Exception {
        unit: UnitId,
        rule: ExceptionRule,
    },
    Silent {
        unit: UnitId,
        silent: bool,
    },
    UnknownUnit(UnknownUnitReply),
    Clear(Option<UnitId>),
    Drop,
    Stop,
    Start,
    Restart,
    Reject(bool),
    Set {
        unit: UnitId,
        table: Table,
        address: u16,
        value: u16,
    },
    Get {
        unit: UnitId,
        table: Table,
        address: u16,
        count: usize,
    },
    Status,
    Help,
}

/// Why a command line was refused or failed; sent back as `error: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(String);

impl Command {
    /// Parses one line. Blank lines and `#` comments yield `None`.
    pub fn parse(line: &str) -> Result<Option<Self>, CommandError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&name, args)) = words.split_first() else {
            return Ok(None);
        };
        if name.starts_with('#') {
            return Ok(None);
        }
        let arity = |expected: &[usize], usage: &str| {
            if expected.contains(&args.len()) {
                Ok(())
            } else {
                Err(CommandError(format!("usage: {usage}")))
            }
        };
        let command = match name {
            "delay" => {
                arity(&[2], "delay UNIT MS")?;
                Command::Delay {
                    unit: number(args[0], "UNIT")?,
                    delay: Duration::from_millis(number(args[1], "MS")?),
                }
            }
            "exception" => {
                arity(&[5], "exception UNIT FC|any ADDR COUNT CODE")?;
                let function = match args[1] {
                    "any" | "*" => None,
                    fc => Some(number(fc, "FC")?),
                };
                let start: u16 = number(args[2], "ADDR")?;
                let count: u32 = number(args[3], "COUNT")?;
                if count == 0 || u32::from(start) + count > 65_536 {
                    return Err(CommandError(
                        "COUNT must be at least 1 and ADDR+COUNT at most 65536".into(),
                    ));
                }
                let code: u8 = number(args[4], "CODE")?;
                if code == 0 || code >= 0x80 {
                    return Err(CommandError("CODE must be 1..=127".into()));
                }
                Command::Exception {
                    unit: number(args[0], "UNIT")?,
                    rule: ExceptionRule {
                        function,
                        start,
                        count,
                        code: ExceptionCode::new(code),
                    },
                }
            }
            "silent" => {
                arity(&[2], "silent UNIT on|off")?;
                Command::Silent {
                    unit: number(args[0], "UNIT")?,
                    silent: on_off(args[1])?,
                }
            }
            "unknown-unit" => {
                arity(&[1], "unknown-unit silent|gateway")?;
                Command::UnknownUnit(match args[0] {
                    "silent" => UnknownUnitReply::Silent,
                    "gateway" => UnknownUnitReply::GatewayTargetDevice,
                    other => {
                        return Err(CommandError(format!(
                            "expected silent or gateway, got `{other}`"
                        )));
                    }
                })
            }
            "clear" => {
                arity(&[0, 1], "clear [UNIT]")?;
                Command::Clear(args.first().map(|u| number(u, "UNIT")).transpose()?)
            }
            "drop" => {
                arity(&[0], "drop")?;
                Command::Drop
            }
            "stop" => {
                arity(&[0], "stop")?;
                Command::Stop
            }
            "start" => {
                arity(&[0], "start")?;
                Command::Start
            }
            "restart" => {
                arity(&[0], "restart")?;
                Command::Restart
            }
            "reject" => {
                arity(&[1], "reject on|off")?;
                Command::Reject(on_off(args[0])?)
            }
            "set" => {
                arity(&[4], "set UNIT TABLE ADDR VALUE")?;
                let table = table(args[1])?;
                let value = number(args[3], "VALUE")?;
                if table.is_bit() && value > 1 {
                    return Err(CommandError(format!("{table} take 0 or 1")));
                }
                Command::Set {
                    unit: number(args[0], "UNIT")?,
                    table,
                    address: number(args[2], "ADDR")?,
                    value,
                }
            }
            "get" => {
                arity(&[3, 4], "get UNIT TABLE ADDR [COUNT]")?;
                let count = args
                    .get(3)
                    .map(|c| number(c, "COUNT"))
                    .transpose()?
                    .unwrap_or(1);
                if count == 0 || count > MAX_GET {
                    return Err(CommandError(format!("COUNT must be 1..={MAX_GET}")));
                }
                Command::Get {
                    unit: number(args[0], "UNIT")?,
                    table: table(args[1])?,
                    address: number(args[2], "ADDR")?,
                    count,
                }
            }
            "status" => {
                arity(&[0], "status")?;
                Command::Status
            }
            "help" => Command::Help,
            other => return Err(CommandError(format!("unknown command `{other}`; {HELP}"))),
        };
        Ok(Some(command))
    }

    /// Carries the command out; the `Ok` text follows `ok` on the reply line.
    pub async fn apply(&self, server: &PlantServer) -> Result<String, CommandError> {
        let plant = server.plant();
        let failed = |e: &dyn std::fmt::Display| CommandError(e.to_string());
        match self {
            Command::Delay { unit, delay } => {
                plant
                    .set_response_delay(*unit, *delay)
                    .map_err(|e| failed(&e))?;
            }
            Command::Exception { unit, rule } => {
                plant
                    .add_exception(*unit, rule.clone())
                    .map_err(|e| failed(&e))?;
            }
            Command::Silent { unit, silent } => {
                plant.set_silent(*unit, *silent).map_err(|e| failed(&e))?;
            }
            Command::UnknownUnit(reply) => plant.set_unknown_unit_reply(*reply),
            Command::Clear(Some(unit)) => plant.clear_unit_faults(*unit).map_err(|e| failed(&e))?,
            Command::Clear(None) => plant.clear_faults(),
            Command::Drop => server.drop_connections(),
            Command::Stop => server.stop_listening().await,
            Command::Start => server.start_listening().await.map_err(|e| failed(&e))?,
            Command::Restart => server.restart().await.map_err(|e| failed(&e))?,
            Command::Reject(reject) => server.set_reject_new_connections(*reject),
            Command::Set {
                unit,
                table,
                address,
                value,
            } => {
                let bank = plant.bank(*unit).map_err(|e| failed(&e))?;
                let written = if table.is_bit() {
                    bank.write_bits(*table, *address, &[*value != 0])
                } else {
                    bank.write_words(*table, *address, &[*value])
                };
                written.map_err(|e| failed(&e))?;
            }
            Command::Get {
                unit,
                table,
                address,
                count,
            } => {
                let bank = plant.bank(*unit).map_err(|e| failed(&e))?;
                let values: Vec<String> = if table.is_bit() {
                    let bits = bank.read_bits(*table, *address, *count);
                    let bits = bits.map_err(|e| failed(&e))?;
                    bits.iter().map(|&b| u8::from(b).to_string()).collect()
                } else {
                    let words = bank.read_words(*table, *address, *count);
                    words
                        .map_err(|e| failed(&e))?
                        .iter()
                        .map(u16::to_string)
                        .collect()
                };
                return Ok(values.join(" "));
            }
            Command::Status => {
                return Ok(format!(
                    "listening={} connections={}",
                    server.is_listening().await,
                    server.connection_count()
                ));
            }
            Command::Help => return Ok(HELP.to_owned()),
        }
        Ok(String::new())
    }
}

/// Runs one line and formats its reply (`None` for blank and comment lines).
pub async fn execute_line(server: &PlantServer, line: &str) -> Option<String> {
    let result = match Command::parse(line) {
        Ok(None) => return None,
        Ok(Some(command)) => command.apply(server).await,
        Err(error) => Err(error),
    };
    Some(match result {
        Ok(text) if text.is_empty() => "ok".to_owned(),
        Ok(text) => format!("ok {text}"),
        Err(error) => format!("error: {error}"),
    })
}

/// Reads commands until `input` ends, writing one reply line per command.
pub async fn serve_commands<R, W>(
    server: &PlantServer,
    input: R,
    mut output: W,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(reply) = execute_line(server, &line).await {
            tracing::info!(command = line.trim(), %reply, "control command");
            output.write_all(reply.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await?;
        }
    }
    Ok(())
}

fn number<T>(text: &str, what: &str) -> Result<T, CommandError>
where
    T: TryFrom<u64>,
{
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    parsed
        .ok()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| CommandError(format!("{what}: `{text}` is not a number in range")))
}

fn on_off(text: &str) -> Result<bool, CommandError> {
    match text {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        other => Err(CommandError(format!("expected on or off, got `{other}`"))),
    }
}

fn table(text: &str) -> Result<Table, CommandError> {
    match text {
        "coils" | "co" | "coil" => Ok(Table::Coils),
        "discrete_inputs" | "di" => Ok(Table::DiscreteInputs),
        "holding_registers" | "hr" => Ok(Table::HoldingRegisters),
        "input_registers" | "ir" => Ok(Table::InputRegisters),
        other => Err(CommandError(format!(
            "unknown table `{other}` (coils, discrete_inputs, holding_registers, input_registers)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_form() {
        assert_eq!(
            Command::parse("delay 1 250").unwrap(),
            Some(Command::Delay {
                unit: 1,
                delay: Duration::from_millis(250)
            })
        );
        assert_eq!(
            Command::parse("exception 2 3 0x10 4 6").unwrap(),
            Some(Command::Exception {
                unit: 2,
                rule: ExceptionRule {
                    function: Some(3),
                    start: 16,
                    count: 4,
                    code: ExceptionCode::ServerDeviceBusy
                }
            })
        );
        assert!(matches!(
            Command::parse("exception 2 any 0 65536 4").unwrap(),
            Some(Command::Exception {
                rule: ExceptionRule { function: None, .. },
                ..
            })
        ));
        assert_eq!(Command::parse("  ").unwrap(), None);
        assert_eq!(Command::parse("# note").unwrap(), None);
        assert_eq!(Command::parse("clear").unwrap(), Some(Command::Clear(None)));
        assert_eq!(
            Command::parse("clear 3").unwrap(),
            Some(Command::Clear(Some(3)))
        );
        assert_eq!(
            Command::parse("reject on").unwrap(),
            Some(Command::Reject(true))
        );
        assert_eq!(
            Command::parse("set 1 hr 0 2").unwrap(),
            Some(Command::Set {
                unit: 1,
                table: Table::HoldingRegisters,
                address: 0,
                value: 2
            })
        );
    }

    #[test]
    fn refuses_malformed_commands_with_a_reason() {
        let error = |line: &str| Command::parse(line).unwrap_err().to_string();
        assert!(error("delay 1").contains("usage: delay UNIT MS"));
        assert!(error("delay 300 5").contains("UNIT: `300`"));
        assert!(error("exception 1 3 65535 2 2").contains("ADDR+COUNT"));
        assert!(error("exception 1 3 0 1 0").contains("CODE"));
        assert!(error("set 1 coils 0 2").contains("0 or 1"));
        assert!(error("set 1 tables 0 2").contains("unknown table"));
        assert!(error("get 1 hr 0 126").contains("COUNT"));
        assert!(error("reboot").contains("unknown command `reboot`"));
    }
}
