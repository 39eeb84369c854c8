//! `<service> user add|passwd|list|remove`: account recovery on the accounts database a
//! panel uses, run by the service's owner on the gateway. Passwords come from standard
//! input (one line) or, on a terminal, from a prompt without echo; never from the
//! command line, where `ps` would show them.

use std::io::{BufRead, IsTerminal, Write};

use crate::account::AccountError;
use crate::auth::{Auth, AuthError, UserInfo};
use crate::{Role, Secret};

/// The `user` subcommand's actions.
#[derive(Debug, clap::Subcommand)]
pub enum UserAction {
    /// Create an account; the password is read from standard input or a prompt.
    Add {
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Set an account's password (read from standard input or a prompt) and end its sessions.
    Passwd { name: String },
    /// List the accounts and their roles.
    List,
    /// Delete an account with its sessions and API tokens (never the last admin).
    Remove { name: String },
}

/// Runs `action` on the accounts `open` opens, printing what was done. Input is checked
/// first: a bad role or an empty password is refused before any hashing.
pub fn run(
    action: UserAction,
    open: impl FnOnce() -> Result<Auth, UserError>,
) -> Result<(), UserError> {
    match action {
        UserAction::Add { name, role } => {
            let role: Role = role
                .parse()
                .map_err(|e: AccountError| UserError::BadInput(e.to_string()))?;
            let password = read_password()?;
            let auth = open()?;
            let user = add(&auth, &name, role, &password)?;
            println!("user {} created with role {}", user.username, user.role);
        }
        UserAction::Passwd { name } => {
            let password = read_password()?;
            let auth = open()?;
            passwd(&auth, &name, &password)?;
            println!("password of {name} changed; its sessions ended");
        }
        UserAction::List => {
            let auth = open()?;
            for user in list(&auth)? {
                println!("{}\t{}", user.username, user.role);
            }
        }
        UserAction::Remove { name } => {
            let auth = open()?;
            remove(&auth, &name)?;
            println!("user {name} removed");
        }
    }
    Ok(())
}

/// Why a user command failed, split by exit code.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Bad input: a wrong name, role or password, an unknown account (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The database or the terminal failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl From<AuthError> for UserError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Account(_)
            | AuthError::NotFound(_)
            | AuthError::LastAdmin
            | AuthError::BadRequest(_)
            | AuthError::Store(crate::StoreError::Duplicate { .. }) => {
                UserError::BadInput(e.to_string())
            }
            other => UserError::Failed(other.to_string()),
        }
    }
}

fn add(auth: &Auth, name: &str, role: Role, password: &Secret) -> Result<UserInfo, UserError> {
    Ok(auth.create_user(None, name, password, role)?)
}

/// Sets a new password and ends the account's sessions.
fn passwd(auth: &Auth, name: &str, password: &Secret) -> Result<(), UserError> {
    Ok(auth.set_password(None, name, password)?)
}

fn list(auth: &Auth) -> Result<Vec<UserInfo>, UserError> {
    Ok(auth.list_users(None)?)
}

fn remove(auth: &Auth, name: &str) -> Result<(), UserError> {
    Ok(auth.delete_user(None, name)?)
}

/// The new password: one line of standard input, or typed twice at a prompt without
/// echo when standard input is a terminal.
pub fn read_password() -> Result<Secret, UserError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| UserError::Failed(format!("standard input: {e}")))?;
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            return Err(UserError::BadInput(
                "no password on standard input (one line expected)".into(),
            ));
        }
        return Ok(Secret::new(line));
    }
    let first = prompt("New password: ")?;
    let second = prompt("Repeat it: ")?;
    if first != second {
        return Err(UserError::BadInput("the two passwords differ".into()));
    }
    Ok(first)
}

/// One line from the terminal with echo off (restored afterwards).
fn prompt(text: &str) -> Result<Secret, UserError> {
    let failed = |e: std::io::Error| UserError::Failed(format!("terminal: {e}"));
    let mut err = std::io::stderr();
    err.write_all(text.as_bytes()).map_err(failed)?;
    err.flush().map_err(failed)?;
    let _echo = EchoOff::new().map_err(failed)?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(failed)?;
    let _ = writeln!(err);
    Ok(Secret::new(line.trim_end_matches(['\n', '\r'])))
}

/// Turns terminal echo off on standard input until dropped.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> std::io::Result<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; errors checked.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &quiet) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(EchoOff { saved })
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same fd.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}
