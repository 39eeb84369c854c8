//! The systemd notify protocol (`sd_notify(3)`): one datagram per state change sent to
//! the Unix socket named by `NOTIFY_SOCKET`. A service started without that variable
//! (by hand, in tests, under another supervisor) gets a [`Notifier`] that does nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends state lines to the service manager, when there is one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket. Unset or empty
    /// gives a notifier that does nothing.
    pub fn from_env() -> io::Result<Notifier> {
        match std::env::var_os(NOTIFY_SOCKET) {
            Some(value) if !value.is_empty() => Notifier::to_socket(&value.to_string_lossy()),
            _ => Ok(Notifier::disabled()),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// A notifier sending to this socket (`@name` is abstract, anything else a path).
    pub fn to_socket(name: &str) -> io::Result<Notifier> {
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt as _;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None => SocketAddr::from_pathname(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some((socket, addr)),
        })
    }

    /// Whether a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The service is up and doing its job.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// What the service is doing now, for `systemctl status`.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// The service is alive (systemd's watchdog, `WatchdogSec=`).
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// The service has begun to stop.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1\nSTATUS=stopping")
    }

    fn send(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some((socket, addr)) => socket.send_to_addr(state.as_bytes(), addr).map(drop),
            None => Ok(()),
        }
    }
}

/// A status is one line: a newline would start a new (unintended) assignment.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (dir, socket, path.to_str().unwrap().to_owned())
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_status_and_stopping_reach_the_socket() {
        let (_dir, socket, path) = listen();
        let notifier = Notifier::to_socket(&path).unwrap();
        assert!(notifier.is_enabled());
        notifier.ready("serving\nsecond line").unwrap();
        assert_eq!(recv(&socket), "READY=1\nSTATUS=serving second line");
        notifier.status("3 devices online").unwrap();
        assert_eq!(recv(&socket), "STATUS=3 devices online");
        notifier.stopping().unwrap();
        assert_eq!(recv(&socket), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn abstract_sockets_are_reached_by_at_names() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("infra-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        Notifier::to_socket(&format!("@{name}"))
            .unwrap()
            .status("up")
            .unwrap();
        assert_eq!(recv(&socket), "STATUS=up");
    }

    #[test]
    fn a_disabled_notifier_sends_nothing_and_succeeds() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.ready("x").unwrap();
        notifier.stopping().unwrap();
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        let notifier = Notifier::to_socket(path.to_str().unwrap()).unwrap();
        assert!(notifier.ready("x").is_err());
    }
}
