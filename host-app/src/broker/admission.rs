//! Admission at accept: which new sockets the front takes on, before it reads a byte.
//!
//! Owns the pool of pending sockets (accepted, CONNECT not yet complete), kept apart from
//! logged-in connections so silent or slow sockets cannot lock valid users out (SlowITe,
//! CVE-2020-13849): when the pool is full the oldest pending socket is closed to make
//! room, so a socket can hold a place only until newer ones arrive or its CONNECT
//! deadline passes. Also owns the sockets-at-once limit per IP address and the connect
//! rates (per address and overall), as token buckets that hold one second's worth.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// Addresses remembered before idle ones (no socket open, bucket full) are forgotten.
const ADDRESSES_KEPT: usize = 4096;

/// The limits, as validated in `[broker.embedded]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_pending: usize,
    pub max_per_address: usize,
    pub rate: u32,
    pub rate_per_address: u32,
}

/// Why a new socket was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds `max_connections_per_address` sockets.
    AddressFull,
    /// Its address opened more than `connect_rate_per_address` sockets this second.
    AddressRate,
    /// More than `connect_rate` sockets were opened this second.
    Rate,
}

pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
}

struct State {
    overall: Bucket,
    addresses: HashMap<IpAddr, Address>,
    /// Pending sockets by arrival, each with the token that closes it when evicted.
    pending: BTreeMap<u64, CancellationToken>,
    next: u64,
    prune_at: usize,
}

struct Address {
    open: usize,
    bucket: Bucket,
}

/// A token bucket holding at most `rate` tokens, refilled at `rate` per second.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            last: now,
        }
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        self.last = now;
    }

    fn take(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate)
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        let now = Instant::now();
        Admission {
            limits,
            state: Mutex::new(State {
                overall: Bucket::full(limits.rate, now),
                addresses: HashMap::new(),
                pending: BTreeMap::new(),
                next: 0,
                prune_at: ADDRESSES_KEPT,
            }),
        }
    }

    /// Takes on a new socket from `ip` into the pending pool, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let limits = self.limits;
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.addresses.len() >= state.prune_at {
            state
                .addresses
                .retain(|_, a| a.open > 0 || !a.bucket.is_full(limits.rate_per_address, now));
            state.prune_at = (state.addresses.len() * 2).max(ADDRESSES_KEPT);
        }
        let address = state.addresses.entry(ip).or_insert_with(|| Address {
            open: 0,
            bucket: Bucket::full(limits.rate_per_address, now),
        });
        if address.open >= limits.max_per_address {
            return Err(Refused::AddressFull);
        }
        if !address.bucket.take(limits.rate_per_address, now) {
            return Err(Refused::AddressRate);
        }
        address.open += 1;
        if !state.overall.take(limits.rate, now) {
            release(&mut state, ip);
            return Err(Refused::Rate);
        }
        if state.pending.len() >= limits.max_pending
            && let Some((_, oldest)) = state.pending.pop_first()
        {
            oldest.cancel();
        }
        let id = state.next;
        state.next += 1;
        let evicted = CancellationToken::new();
        state.pending.insert(id, evicted.clone());
        Ok(Ticket {
            admission: self.clone(),
            ip,
            pending: Some(id),
            evicted,
        })
    }

    /// Sockets in the pending pool now.
    #[cfg(test)]
    fn pending(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pending.len()
    }
}

fn release(state: &mut State, ip: IpAddr) {
    if let Some(address) = state.addresses.get_mut(&ip) {
        address.open = address.open.saturating_sub(1);
    }
}

/// One admitted socket's places: its address's count, and its place in the pending pool
/// until [`Ticket::leave_pending`]. Dropping it gives both back.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    pending: Option<u64>,
    evicted: CancellationToken,
}

impl Ticket {
    /// Cancelled when newer sockets push this one out of the full pending pool.
    pub fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }

    /// The socket's CONNECT has arrived: it leaves the pending pool (and can no longer
    /// be evicted).
    pub fn leave_pending(&mut self) {
        if let Some(id) = self.pending.take() {
            let mut state = self
                .admission
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            state.pending.remove(&id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self
            .admission
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(id) = self.pending.take() {
            state.pending.remove(&id);
        }
        release(&mut state, self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_pending: usize, max_per_address: usize, rate: u32) -> Arc<Admission> {
        Arc::new(Admission::new(Limits {
            max_pending,
            max_per_address,
            rate,
            rate_per_address: rate,
        }))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_full_pending_pool_evicts_its_oldest_socket() {
        let admission = admission(2, 10, 100);
        let first = admission.admit(ip(1)).unwrap();
        let second = admission.admit(ip(1)).unwrap();
        let _third = admission.admit(ip(1)).unwrap();
        assert!(first.evicted().is_cancelled());
        assert!(!second.evicted().is_cancelled());
        assert_eq!(admission.pending(), 2);
    }

    #[test]
    fn a_socket_that_left_the_pending_pool_is_never_evicted() {
        let admission = admission(1, 10, 100);
        let mut logged_in = admission.admit(ip(1)).unwrap();
        logged_in.leave_pending();
        let _a = admission.admit(ip(1)).unwrap();
        let _b = admission.admit(ip(1)).unwrap();
        assert!(!logged_in.evicted().is_cancelled());
    }

    #[test]
    fn sockets_per_address_are_capped_and_given_back_on_drop() {
        let admission = admission(10, 2, 100);
        let a = admission.admit(ip(1)).unwrap();
        let _b = admission.admit(ip(1)).unwrap();
        assert_eq!(admission.admit(ip(1)).err(), Some(Refused::AddressFull));
        assert!(
            admission.admit(ip(2)).is_ok(),
            "another address is not held"
        );
        drop(a);
        assert!(admission.admit(ip(1)).is_ok());
    }

    #[test]
    fn connect_rate_per_address_and_overall_refuse_bursts_beyond_a_second() {
        let per_address = Arc::new(Admission::new(Limits {
            max_pending: 100,
            max_per_address: 100,
            rate: 100,
            rate_per_address: 3,
        }));
        let held: Vec<_> = (0..3).map(|_| per_address.admit(ip(1)).unwrap()).collect();
        assert_eq!(per_address.admit(ip(1)).err(), Some(Refused::AddressRate));
        drop(held);
        assert_eq!(
            per_address.admit(ip(1)).err(),
            Some(Refused::AddressRate),
            "closing sockets gives no new tokens"
        );

        let overall = admission(100, 100, 2);
        let _a = overall.admit(ip(1)).unwrap();
        let _b = overall.admit(ip(2)).unwrap();
        assert_eq!(overall.admit(ip(3)).err(), Some(Refused::Rate));
    }

    #[test]
    fn a_refused_socket_holds_no_place_of_its_address() {
        let admission = Arc::new(Admission::new(Limits {
            max_pending: 100,
            max_per_address: 1,
            rate: 1,
            rate_per_address: 100,
        }));
        let a = admission.admit(ip(1)).unwrap();
        drop(a);
        assert_eq!(admission.admit(ip(1)).err(), Some(Refused::Rate));
        let state = admission.state.lock().unwrap();
        assert_eq!(state.addresses[&ip(1)].open, 0);
    }
}
