//! The one exit-code policy of both binaries: 0 on success, 2 for a bad configuration or
//! a bad command line (as clap itself exits), 1 for a failure while running.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// The process ran and something failed: a broker, a disk, a device.
    RuntimeFailure = 1,
    /// The process was given input it cannot use: a configuration or an argument.
    BadInput = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_policy() {
        assert_eq!(Exit::Success as u8, 0);
        assert_eq!(Exit::RuntimeFailure as u8, 1);
        assert_eq!(Exit::BadInput as u8, 2);
        assert_eq!(ExitCode::from(Exit::BadInput), ExitCode::from(2));
    }
}
