//! Login throttling, per client address and per account.
//!
//! Each key (an address, or a username as typed) counts failed logins within
//! a window. At `max_failures` the key is locked for `lockout`, doubling with
//! each further failure up to `max_lockout`; a locked key is refused with a
//! Retry-After. Both maps are capped at `max_entries`: stale entries go first,
//! then the least recently used, so a flood of addresses or names cannot grow
//! memory without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::duration_ms;
use crate::lock;

/// Throttling limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within `window` that lock a key.
    pub max_failures: u32,
    /// How long a failure counts.
    pub window: Duration,
    /// The first lockout; each further failure doubles it.
    pub lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// Most keys kept per map.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(15 * 60),
            max_entries: 10_000,
        }
    }
}

/// Which key a lockout hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    Address(IpAddr, Duration),
    Account(String, Duration),
}

impl Locked {
    /// How long until the key is free again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Locked::Address(_, d) | Locked::Account(_, d) => *d,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first_ms: i64,
    last_ms: i64,
    locked_until_ms: i64,
}

impl Entry {
    fn stale(&self, now: i64, window_ms: i64) -> bool {
        now >= self.first_ms.saturating_add(window_ms) && now >= self.locked_until_ms
    }
}

#[derive(Debug)]
struct Bounded<K> {
    map: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Bounded<K> {
    fn locked_for(&self, key: &K, now: i64) -> Option<Duration> {
        let e = self.map.get(key)?;
        (e.locked_until_ms > now)
            .then(|| Duration::from_millis((e.locked_until_ms - now).unsigned_abs()))
    }

    /// Counts a failure; returns the lockout if this failure started one.
    fn fail(&mut self, key: K, now: i64, cfg: &ThrottleConfig) -> Option<Duration> {
        let window_ms = duration_ms(cfg.window);
        if !self.map.contains_key(&key) && self.map.len() >= cfg.max_entries {
            self.map.retain(|_, e| !e.stale(now, window_ms));
            if self.map.len() >= cfg.max_entries
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.last_ms)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        let e = self.map.entry(key).or_insert(Entry {
            failures: 0,
            first_ms: now,
            last_ms: now,
            locked_until_ms: 0,
        });
        if e.stale(now, window_ms) {
            *e = Entry {
                failures: 0,
                first_ms: now,
                last_ms: now,
                locked_until_ms: 0,
            };
        }
        e.failures = e.failures.saturating_add(1);
        e.last_ms = now;
        if e.failures < cfg.max_failures {
            return None;
        }
        let doublings = (e.failures - cfg.max_failures).min(16);
        let lock = cfg
            .lockout
            .saturating_mul(1 << doublings)
            .min(cfg.max_lockout);
        e.locked_until_ms = now.saturating_add(duration_ms(lock));
        // The window restarts with the lockout so the count survives it.
        e.first_ms = now;
        Some(lock)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The throttle for one application.
#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    addrs: Mutex<Bounded<IpAddr>>,
    accounts: Mutex<Bounded<String>>,
}

/// The account key: usernames as typed, bounded in length.
fn account_key(username: &str) -> String {
    username.chars().take(64).collect()
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            addrs: Mutex::new(Bounded {
                map: HashMap::new(),
            }),
            accounts: Mutex::new(Bounded {
                map: HashMap::new(),
            }),
        }
    }

    /// Refuses an attempt while the address or the account is locked.
    pub fn check(&self, addr: Option<IpAddr>, username: &str, now_ms: i64) -> Result<(), Locked> {
        if let Some(ip) = addr
            && let Some(d) = lock(&self.addrs).locked_for(&ip, now_ms)
        {
            return Err(Locked::Address(ip, d));
        }
        let key = account_key(username);
        if let Some(d) = lock(&self.accounts).locked_for(&key, now_ms) {
            return Err(Locked::Account(key, d));
        }
        Ok(())
    }

    /// Counts a failed attempt; returns the lockouts it started.
    pub fn failure(&self, addr: Option<IpAddr>, username: &str, now_ms: i64) -> Vec<Locked> {
        let mut locked = Vec::new();
        if let Some(ip) = addr
            && let Some(d) = lock(&self.addrs).fail(ip, now_ms, &self.cfg)
        {
            locked.push(Locked::Address(ip, d));
        }
        let key = account_key(username);
        if let Some(d) = lock(&self.accounts).fail(key.clone(), now_ms, &self.cfg) {
            locked.push(Locked::Account(key, d));
        }
        locked
    }

    /// Forgets the account's failures after a successful login. The address
    /// keeps its count, so a valid login cannot reset a guessing run.
    pub fn success(&self, username: &str) {
        lock(&self.accounts).map.remove(&account_key(username));
    }

    /// Keys held (addresses, accounts).
    pub fn len(&self) -> (usize, usize) {
        (lock(&self.addrs).len(), lock(&self.accounts).len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_entries: usize) -> ThrottleConfig {
        ThrottleConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(40),
            max_entries,
        }
    }

    #[test]
    fn locks_after_max_failures_and_doubles() {
        let t = Throttle::new(cfg(100));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.failure(Some(ip), "a", 0).is_empty());
        assert!(t.failure(Some(ip), "b", 0).is_empty());
        let locked = t.failure(Some(ip), "c", 0);
        assert_eq!(locked, vec![Locked::Address(ip, Duration::from_secs(10))]);
        assert_eq!(
            t.check(Some(ip), "d", 5_000),
            Err(Locked::Address(ip, Duration::from_secs(5)))
        );
        assert_eq!(t.check(Some(ip), "d", 10_000), Ok(()));
        let again = t.failure(Some(ip), "d", 10_000);
        assert_eq!(again, vec![Locked::Address(ip, Duration::from_secs(20))]);
        // Capped at max_lockout.
        t.failure(Some(ip), "d", 30_000);
        let capped = t.failure(Some(ip), "d", 70_000);
        assert_eq!(capped, vec![Locked::Address(ip, Duration::from_secs(40))]);
    }

    #[test]
    fn maps_stay_bounded() {
        let t = Throttle::new(cfg(50));
        for i in 0..1_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            t.failure(Some(ip), &format!("user{i}"), i64::from(i));
        }
        let (addrs, accounts) = t.len();
        assert!(addrs <= 50 && accounts <= 50, "{addrs} {accounts}");
    }

    #[test]
    fn old_failures_expire() {
        let t = Throttle::new(cfg(100));
        t.failure(None, "a", 0);
        t.failure(None, "a", 0);
        // The window has passed: the count starts again.
        assert!(t.failure(None, "a", 61_000).is_empty());
        assert!(t.failure(None, "a", 61_000).is_empty());
        assert_eq!(t.failure(None, "a", 61_000).len(), 1);
    }
}
