//! Broker-wide bounds on what clients can make the broker hold: open connections (in
//! total, per IP, idle), request bytes in flight, and each connection's unsent responses.
//!
//! Every bound here has Kafka's name (see docs/operations.md, "Limits"). The connection
//! table also decides who makes room when the broker is full: the connection idle the
//! longest is closed, so a flood of idle sockets can never lock real clients out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;
use crate::state::now_ms;

/// A connection must have been idle at least this long before it is closed to make room
/// for a new one; a busy broker never drops a client that just sent a request.
const MIN_IDLE_TO_EVICT_MS: i64 = 1_000;

pub struct NetworkLimits {
    /// `queued.max.request.bytes`: bytes of requests read but not yet answered, summed over
    /// every connection. A reader waits for room before it reads a frame's body.
    request_bytes: Arc<Semaphore>,
    request_bytes_total: usize,
    /// `max.connections`, lowered to what the process's descriptor limit allows.
    pub max_connections: usize,
    /// `max.connections.per.ip`.
    pub max_connections_per_ip: usize,
    table: Mutex<ConnTable>,
}

#[derive(Default)]
struct ConnTable {
    next_id: u64,
    open: HashMap<u64, (IpAddr, Arc<Activity>)>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a new connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    PerIp(usize),
    Full(usize),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PerIp(n) => write!(f, "max.connections.per.ip ({n}) reached"),
            Refusal::Full(n) => {
                write!(f, "max.connections ({n}) reached and no connection is idle")
            }
        }
    }
}

impl NetworkLimits {
    pub fn new(config: &BrokerConfig) -> NetworkLimits {
        let fd_room = descriptor_budget();
        let max_connections = config.max_connections.min(fd_room);
        if max_connections < config.max_connections
            && config.explicit.contains_key("max.connections")
        {
            tracing::warn!(
                configured = config.max_connections,
                effective = max_connections,
                "max.connections lowered to fit the open-file limit"
            );
        }
        NetworkLimits {
            request_bytes: Arc::new(Semaphore::new(config.queued_max_request_bytes)),
            request_bytes_total: config.queued_max_request_bytes,
            max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            table: Mutex::new(ConnTable::default()),
        }
    }

    /// Admits a connection from `ip`, closing the longest-idle connection if the broker is
    /// full. The ticket gives the slot back when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let mut t = self.table.lock();
        let from_ip = t.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_connections_per_ip {
            return Err(Refusal::PerIp(self.max_connections_per_ip));
        }
        if t.open.len() >= self.max_connections {
            let now = now_ms();
            let victim = t
                .open
                .iter()
                .filter(|(_, (_, a))| a.in_flight() == 0)
                .map(|(id, (_, a))| (*id, a.clone(), now - a.last_ms()))
                .filter(|(_, _, idle)| *idle >= MIN_IDLE_TO_EVICT_MS)
                .max_by_key(|(_, _, idle)| *idle);
            let Some((id, activity, idle)) = victim else {
                return Err(Refusal::Full(self.max_connections));
            };
            tracing::info!(
                idle_ms = idle,
                "max.connections reached: closing the connection idle the longest"
            );
            // The connection task sees the signal and ends; its ticket then frees the slot,
            // but the new connection is counted now so the table never overshoots.
            activity.evict.notify_one();
            if let Some((old_ip, _)) = t.open.remove(&id) {
                decrement(&mut t.per_ip, old_ip);
            }
        }
        t.next_id += 1;
        let id = t.next_id;
        let activity = Arc::new(Activity::new());
        t.open.insert(id, (ip, activity.clone()));
        *t.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Ticket {
            id,
            ip,
            activity,
            limits: self.clone(),
        })
    }

    /// Waits for room for a request of `size` bytes; the permit holds the room until the
    /// request is answered. `size` is at most `socket.request.max.bytes`, which the config
    /// keeps at or below `queued.max.request.bytes`, so every frame can eventually fit.
    pub async fn reserve_request(&self, size: usize) -> Option<OwnedSemaphorePermit> {
        let n = size.min(self.request_bytes_total).max(1);
        let n = u32::try_from(n).ok()?;
        self.request_bytes.clone().acquire_many_owned(n).await.ok()
    }

    pub fn open_connections(&self) -> usize {
        self.table.lock().open.len()
    }
}

fn decrement(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

/// A connection's place in the table; dropping it frees the place.
pub struct Ticket {
    id: u64,
    ip: IpAddr,
    pub activity: Arc<Activity>,
    limits: Arc<NetworkLimits>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = self.limits.table.lock();
        // Absent when the connection was evicted: its place was already handed on.
        if t.open.remove(&self.id).is_some() {
            decrement(&mut t.per_ip, self.ip);
        }
    }
}

/// What the connection table needs to know about one connection, and how to close it.
pub struct Activity {
    last_ms: AtomicI64,
    in_flight: AtomicUsize,
    /// Signalled when this connection is closed to make room for another.
    pub evict: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            last_ms: AtomicI64::new(now_ms()),
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
        }
    }

    pub fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_ms(&self) -> i64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// Requests read and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    pub fn request_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }
}

/// A count of bytes that tasks can wait on to fall below a limit: a connection's unsent
/// responses, and its requests in flight.
#[derive(Default)]
pub struct ByteGauge {
    used: Mutex<usize>,
    changed: Notify,
}

impl ByteGauge {
    pub fn used(&self) -> usize {
        *self.used.lock()
    }

    /// Waits until `want` more bytes fit under `limit`, then counts them. Something always
    /// fits when nothing is counted, so one item larger than the limit still goes through.
    pub async fn acquire(&self, want: usize, limit: usize) {
        loop {
            let notified = self.changed.notified();
            {
                let mut used = self.used.lock();
                if *used == 0 || used.saturating_add(want) <= limit {
                    *used += want;
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until fewer than `limit` bytes are counted.
    pub async fn wait_below(&self, limit: usize) {
        loop {
            let notified = self.changed.notified();
            if *self.used.lock() < limit {
                return;
            }
            notified.await;
        }
    }

    /// Counts `n` more bytes without waiting (they already exist).
    pub fn add(&self, n: usize) {
        *self.used.lock() += n;
    }

    pub fn release(&self, n: usize) {
        {
            let mut used = self.used.lock();
            *used = used.saturating_sub(n);
        }
        self.changed.notify_waiters();
    }
}

/// Raises the soft open-file limit to the hard limit: a broker holds a descriptor per
/// connection and per active segment, and the common soft default (1024) is far too low.
pub fn raise_descriptor_limit() {
    let Some(mut lim) = open_file_limit() else {
        return;
    };
    if lim.rlim_cur < lim.rlim_max {
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            tracing::debug!(
                from = before,
                to = lim.rlim_max,
                "raised the open-file limit"
            );
        }
    }
}

/// The process's open-file limit (soft and hard), if it can be read.
fn open_file_limit() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Descriptors the broker may spend on client connections: the open-file limit less a
/// share kept for logs, indexes and the broker's own files.
fn descriptor_budget() -> usize {
    match open_file_limit() {
        Some(lim) if lim.rlim_cur != libc::RLIM_INFINITY => {
            let limit = lim.rlim_cur as usize;
            // Keep a quarter (at least 256) for storage, so connections never starve the logs.
            limit.saturating_sub((limit / 4).max(256)).max(16)
        }
        _ => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn limits(pairs: &[(&str, &str)]) -> Arc<NetworkLimits> {
        let props: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(NetworkLimits::new(
            &BrokerConfig::from_props(&props).expect("config"),
        ))
    }

    #[test]
    fn per_ip_limit_refuses_and_frees_on_drop() {
        let l = limits(&[("max.connections.per.ip", "2")]);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let a = l.admit(ip).expect("first");
        let _b = l.admit(ip).expect("second");
        assert_eq!(l.admit(ip).err(), Some(Refusal::PerIp(2)));
        // Another address is unaffected.
        let _c = l.admit("127.0.0.2".parse().expect("ip")).expect("other ip");
        drop(a);
        assert!(l.admit(ip).is_ok());
    }

    #[test]
    fn full_broker_evicts_the_longest_idle_connection_only() {
        let l = limits(&[("max.connections", "2")]);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let old = l.admit(ip).expect("first");
        let busy = l.admit(ip).expect("second");
        // Neither has been idle long enough to be closed for a newcomer.
        assert_eq!(l.admit(ip).err(), Some(Refusal::Full(2)));
        old.activity
            .last_ms
            .store(now_ms() - 60_000, Ordering::Relaxed);
        busy.activity
            .last_ms
            .store(now_ms() - 120_000, Ordering::Relaxed);
        busy.activity.request_started();
        busy.activity
            .last_ms
            .store(now_ms() - 120_000, Ordering::Relaxed);
        // The busy one is older but has a request in flight: the idle one goes.
        let _new = l.admit(ip).expect("room made");
        assert_eq!(l.open_connections(), 2);
        drop(old);
        assert_eq!(
            l.open_connections(),
            2,
            "evicted ticket must not free twice"
        );
    }

    #[tokio::test]
    async fn gauge_waits_for_room_and_lets_one_oversized_item_through() {
        let g = Arc::new(ByteGauge::default());
        g.acquire(500, 100).await; // nothing counted: goes through
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.acquire(10, 100).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        g.release(500);
        waiter.await.expect("waiter");
        assert_eq!(g.used(), 10);
    }
}
