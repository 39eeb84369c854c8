//! The status page: the MQTT link, the primary host's STATE as the node saw it last,
//! store-and-forward, and each device's figures, read from the node's metric source.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use web::Caller;
use web::shell::Shell;

use super::UiState;
use crate::node::exposition::Figures;

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    shell: Shell,
    f: Figures,
    now_ms: u64,
}

impl StatusPage {
    fn link_state(&self) -> &'static str {
        if self.f.born_on.is_some() {
            "online"
        } else {
            "offline"
        }
    }

    fn host_state(&self) -> String {
        match self.f.host_state {
            Some((true, ts)) => format!("online (STATE of {})", ms_text(ts)),
            Some((false, ts)) => format!("offline (STATE of {})", ms_text(ts)),
            None => "none seen".to_owned(),
        }
    }

    fn since(&self) -> String {
        match self.f.link_since_ms {
            0 => "never connected".to_owned(),
            ms => format!(
                "{} ({} ago)",
                ms_text(ms),
                duration_text(self.now_ms.saturating_sub(ms))
            ),
        }
    }

    fn dur(&self, ms: &u64) -> String {
        duration_text(*ms)
    }

    fn us(&self, us: &u64) -> String {
        us_text(*us)
    }

    fn ms(&self, ms: &u64) -> String {
        ms_text(*ms)
    }

    fn bytes(&self, n: &u64) -> String {
        bytes_text(*n)
    }

    fn budget(&self) -> String {
        self.f
            .daily_budget
            .map_or_else(|| "none".to_owned(), bytes_text)
    }

    fn drain(&self) -> String {
        match self.f.drain_eta_s() {
            Some(s) => duration_text(s * 1000),
            None if self.f.store_depth == 0 => "empty".to_owned(),
            None => "not replaying".to_owned(),
        }
    }
}

/// Unix ms as UTC `YYYY-MM-DD hh:mm:ss`.
pub fn ms_text(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A duration in ms as `1h 2m 3s`, `4.5 s` or `12 ms`.
pub fn duration_text(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => {
            let s = ms / 1000;
            match (s / 3600, s % 3600 / 60, s % 60) {
                (0, m, s) => format!("{m}m {s}s"),
                (h, m, s) => format!("{h}h {m}m {s}s"),
            }
        }
    }
}

/// A byte count as a bill reads it: exact below 10 kB (`6,057 B`), else three
/// significant digits in decimal units (`12.3 kB`, `1.50 GB`).
pub fn bytes_text(n: u64) -> String {
    if n < 10_000 {
        return match n {
            0..1000 => format!("{n} B"),
            _ => format!("{},{:03} B", n / 1000, n % 1000),
        };
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in ["kB", "MB", "GB", "TB"] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    let decimals = match v {
        ..10.0 => 2,
        ..100.0 => 1,
        _ => 0,
    };
    format!("{v:.decimals$} {unit}")
}

/// Microseconds as milliseconds with one decimal.
pub fn us_text(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

pub async fn page(State(state): State<UiState>, caller: Caller) -> Response {
    let page = StatusPage {
        shell: state.shell(&caller, "Status", "/"),
        f: state.node.figures(),
        now_ms: infra::clock::now_ms(),
    };
    web::shell::html(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bill_says_when_the_daily_budget_paused_replay() {
        let shell = Shell {
            product: "Sparkplug edge node",
            title: "Status".into(),
            user: None,
            csrf_token: String::new(),
            nav: Vec::new(),
            styles: Vec::new(),
            scripts: Vec::new(),
            icon: String::new(),
            logout_url: "/logout",
        };
        let mut page = StatusPage {
            shell,
            f: Figures {
                daily_budget: Some(50_000_000),
                ..Figures::default()
            },
            now_ms: 0,
        };
        page.f.bill.sent_today = 48_700_000;
        page.f.bill.received_today = 12_345;
        let running = page.render().unwrap();
        assert!(running.contains("48.7 MB / 12.3 kB"), "{running}");
        assert!(running.contains("50.0 MB") && !running.contains("REPLAY PAUSED"));
        page.f.bill.replay_paused = true;
        let paused = page.render().unwrap();
        assert!(paused.contains("REPLAY PAUSED"), "{paused}");
        page.f.daily_budget = None;
        assert!(
            page.render()
                .unwrap()
                .contains("<td id=\"bill-budget\">none")
        );
    }

    #[test]
    fn times_read_plainly() {
        assert_eq!(ms_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(ms_text(1_764_650_000_000), "2025-12-02 04:33:20 UTC");
        assert_eq!(duration_text(12), "12 ms");
        assert_eq!(duration_text(4_500), "4.5 s");
        assert_eq!(duration_text(3_723_000), "1h 2m 3s");
        assert_eq!(us_text(1_250), "1.2 ms");
        assert_eq!(bytes_text(191), "191 B");
        assert_eq!(bytes_text(6_057), "6,057 B");
        assert_eq!(bytes_text(12_345), "12.3 kB");
        assert_eq!(bytes_text(179_300_000), "179 MB");
        assert_eq!(bytes_text(1_500_000_000), "1.50 GB");
    }
}
