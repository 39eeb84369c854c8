//! Errors of Modbus requests and writes, each naming device, unit, function and address.

use std::fmt;

use tokio_modbus::ExceptionCode;

use super::tag::WriteRefusal;

/// What went wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The device answered with an exception response.
    Exception(ExceptionCode),
    /// No answer within the device's timeout.
    Timeout,
    /// The connection could not be opened or broke.
    Transport(String),
    /// An answer that does not belong to the request (wrong unit, function or length).
    Protocol(String),
}

impl Failure {
    /// Whether the failure says the device is unreachable (counts toward offline), as
    /// opposed to the device answering but refusing this one request.
    pub fn is_communication(&self) -> bool {
        match self {
            Failure::Exception(code) => matches!(
                code,
                ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice
            ),
            Failure::Timeout | Failure::Transport(_) | Failure::Protocol(_) => true,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Exception(code) => {
                write!(f, "exception {:02X} ({code})", u8::from(*code))
            }
            Failure::Timeout => f.write_str("no response within the timeout"),
            Failure::Transport(e) => write!(f, "transport error: {e}"),
            Failure::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// A failed request, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device `{device}` unit {unit} function {function:02} address {address}: {failure}")]
pub struct RequestError {
    pub device: String,
    pub unit: u8,
    pub function: u8,
    pub address: u16,
    pub failure: Failure,
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("no tag `{0}`")]
    UnknownTag(String),
    #[error("write to device `{device}` tag `{tag}` refused: {reason}")]
    Refused {
        device: String,
        tag: String,
        reason: WriteRefusal,
    },
    #[error("device `{device}` is offline; write to tag `{tag}` not sent")]
    Offline { device: String, tag: String },
    #[error("write to tag `{tag}` failed: {source}")]
    Request { tag: String, source: RequestError },
    #[error("the acquisition has stopped")]
    Stopped,
}
