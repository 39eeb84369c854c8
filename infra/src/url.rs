//! The MQTT endpoint URL grammar, the same for every configuration key and command-line
//! flag: `SCHEME://HOST[:PORT][/]`.
//!
//! - `mqtt://` and `tcp://` are plain TCP (default port 1883); `mqtts://` and `ssl://` are
//!   TLS (default port 8883);
//! - an IPv6 host is bracketed: `mqtt://[::1]:1883`;
//! - the host must not be empty, the port must be 1..=65535, and nothing may follow but
//!   one trailing `/` (no path, query or fragment: MQTT has no use for them).

use std::fmt;

/// A parsed MQTT endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    /// `mqtts://` or `ssl://`.
    pub tls: bool,
    /// The host, without IPv6 brackets.
    pub host: String,
    /// The port as written; [`MqttUrl::port`] gives the default when absent.
    pub explicit_port: Option<u16>,
}

/// A URL that is not an MQTT endpoint: the URL and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?}: {problem}")]
pub struct UrlError {
    pub url: String,
    pub problem: String,
}

impl MqttUrl {
    /// Parses `url` by the grammar above.
    pub fn parse(url: &str) -> Result<MqttUrl, UrlError> {
        let fail = |problem: String| UrlError {
            url: url.to_owned(),
            problem,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| fail("no scheme (mqtt://, tcp://, mqtts:// or ssl://)".into()))?;
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(fail(format!(
                    "unknown scheme {other:?} (mqtt, tcp, mqtts or ssl)"
                )));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(fail("a path, query or fragment has no meaning here".into()));
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| fail("unclosed [ around an IPv6 host".into()))?;
                match after {
                    "" => (host, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (host, Some(port)),
                        None => return Err(fail(format!("{after:?} after the IPv6 host"))),
                    },
                }
            }
            None => match rest.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return Err(fail("an IPv6 host must be in brackets: [::1]".into()));
                }
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        if host.is_empty() {
            return Err(fail("the host is empty".into()));
        }
        let explicit_port = port
            .map(|p| match p.parse::<u16>() {
                Ok(0) => Err(fail("port 0 is not a port to connect to".into())),
                Ok(port) => Ok(port),
                Err(_) => Err(fail(format!("port {p:?} is not 1..=65535"))),
            })
            .transpose()?;
        Ok(MqttUrl {
            tls,
            host: host.to_owned(),
            explicit_port,
        })
    }

    /// The port: as written, else 8883 with TLS and 1883 without.
    pub fn port(&self) -> u16 {
        self.explicit_port.unwrap_or(default_port(self.tls))
    }
}

/// MQTT's registered ports: 8883 over TLS, 1883 without.
pub fn default_port(tls: bool) -> u16 {
    if tls { 8883 } else { 1883 }
}

/// `host:port` for a socket address or a URL, with an IPv6 host bracketed.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}", host_port(&self.host, self.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (bool, String, u16) {
        let u = MqttUrl::parse(url).unwrap_or_else(|e| panic!("{e}"));
        (u.tls, u.host.clone(), u.port())
    }

    fn refused(url: &str) -> String {
        match MqttUrl::parse(url) {
            Ok(u) => panic!("{url} accepted as {u:?}"),
            Err(e) => {
                assert!(e.to_string().contains(url), "{e} does not name {url}");
                e.problem
            }
        }
    }

    #[test]
    fn the_four_schemes_and_their_default_ports() {
        assert_eq!(ok("mqtt://broker"), (false, "broker".into(), 1883));
        assert_eq!(ok("tcp://broker"), (false, "broker".into(), 1883));
        assert_eq!(ok("mqtts://broker"), (true, "broker".into(), 8883));
        // Accepted by the edge node's parser, refused by the host's spy before.
        assert_eq!(ok("ssl://broker:8884"), (true, "broker".into(), 8884));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(ok("mqtt://[::1]:1884"), (false, "::1".into(), 1884));
        assert_eq!(ok("mqtts://[::1]"), (true, "::1".into(), 8883));
        assert!(refused("mqtt://::1:1883").contains("brackets"));
        assert!(refused("mqtt://[::1").contains("unclosed"));
        assert!(refused("mqtt://[::1]x").contains("after the IPv6 host"));
    }

    #[test]
    fn a_trailing_slash_is_fine_a_path_is_not() {
        assert_eq!(ok("mqtt://broker:1884/"), (false, "broker".into(), 1884));
        assert!(refused("mqtt://broker/mqtt").contains("path"));
        assert!(refused("mqtt://broker:1883/x/").contains("path"));
        assert!(refused("mqtt://broker?x=1").contains("query"));
    }

    #[test]
    fn port_zero_and_bad_ports_are_refused() {
        assert!(refused("mqtt://broker:0").contains("port 0"));
        assert!(refused("mqtt://broker:99999").contains("1..=65535"));
        assert!(refused("mqtt://broker:").contains("1..=65535"));
        assert!(refused("mqtt://broker:x").contains("1..=65535"));
    }

    #[test]
    fn bad_schemes_and_empty_hosts_are_refused() {
        assert!(refused("http://broker").contains("unknown scheme \"http\""));
        assert!(refused("broker:1883").contains("no scheme"));
        assert!(refused("mqtt://").contains("host is empty"));
        assert!(refused("mqtt://:1883").contains("host is empty"));
        assert!(refused("mqtts://[]:8883").contains("host is empty"));
    }

    #[test]
    fn displays_with_the_resolved_port() {
        assert_eq!(
            MqttUrl::parse("ssl://[::1]").unwrap().to_string(),
            "mqtts://[::1]:8883"
        );
        assert_eq!(
            MqttUrl::parse("tcp://b/").unwrap().to_string(),
            "mqtt://b:1883"
        );
    }
}
