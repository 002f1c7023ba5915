//! Which brokers are alive, as the active controller judges from their heartbeats: a
//! pure state machine (events in, decisions out, the time passed in), so its rules are
//! tested without clocks or sockets.
//!
//! Only the active controller keeps this state, in memory. A newly elected one has heard
//! nobody yet, so it gives every broker a full session from its election before fencing
//! it; a broker that was alive keeps heartbeating and never notices the change.

use std::collections::BTreeMap;

use crate::image::MetadataImage;

#[derive(Debug, Clone)]
pub struct Liveness {
    /// `broker.session.timeout.ms`.
    session_timeout_ms: i64,
    /// Last heartbeat heard from each broker (ms).
    last_seen: BTreeMap<i32, i64>,
    /// The term this state belongs to: leadership lost or regained means start again.
    term: Option<u64>,
    /// When this controller's term began, or it last came back from a stall (ms): the
    /// grace every broker gets.
    since_ms: i64,
    /// When [`Liveness::lead`] last ran (ms).
    checked_ms: i64,
}

/// What the controller should commit for a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fence(i32),
    Unfence(i32),
}

impl Liveness {
    pub fn new(session_timeout_ms: i64) -> Liveness {
        Liveness {
            session_timeout_ms,
            last_seen: BTreeMap::new(),
            term: None,
            since_ms: 0,
            checked_ms: 0,
        }
    }

    /// Starts over when `term` is not the one this state was built in. Called before every
    /// check, about once a second: a gap of half a session since the last call means this
    /// controller itself stood still (SIGSTOP, a suspended VM, a starved process), and the
    /// silence it measured is its own. Brokers then get a fresh grace instead of all being
    /// fenced at once for heartbeats that could not have been heard.
    pub fn lead(&mut self, term: u64, now_ms: i64) {
        if self.term != Some(term) {
            self.term = Some(term);
            self.since_ms = now_ms;
            self.last_seen.clear();
        } else if now_ms - self.checked_ms > self.session_timeout_ms / 2 {
            self.since_ms = now_ms;
        }
        self.checked_ms = now_ms;
    }

    /// This node no longer leads: what it knew is stale by the time it leads again.
    pub fn follow(&mut self) {
        self.term = None;
        self.last_seen.clear();
    }

    /// A heartbeat from `node`; a fenced broker that heartbeats is unfenced.
    pub fn heartbeat(&mut self, image: &MetadataImage, node: i32, now_ms: i64) -> Option<Verdict> {
        self.last_seen.insert(node, now_ms);
        match image.brokers.get(&node) {
            Some(b) if b.fenced => Some(Verdict::Unfence(node)),
            _ => None,
        }
    }

    /// Unfenced brokers silent for longer than the session timeout.
    pub fn expired(&self, image: &MetadataImage, now_ms: i64) -> Vec<Verdict> {
        image
            .live_brokers()
            .filter(|b| {
                let heard = self
                    .last_seen
                    .get(&b.node_id)
                    .copied()
                    .unwrap_or(self.since_ms)
                    .max(self.since_ms);
                now_ms - heard > self.session_timeout_ms
            })
            .map(|b| Verdict::Fence(b.node_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MetadataRecord;

    fn image(brokers: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for &b in brokers {
            image.apply(&MetadataRecord::RegisterBroker {
                node_id: b,
                host: "h".into(),
                port: 9092,
                rack: None,
                incarnation: None,
                listeners: vec![],
            });
        }
        image
    }

    #[test]
    fn a_silent_broker_is_fenced_after_the_session_timeout() {
        let img = image(&[1, 2]);
        let mut l = Liveness::new(9000);
        l.lead(1, 0);
        assert!(l.expired(&img, 9000).is_empty(), "grace from the election");
        l.heartbeat(&img, 1, 5000);
        assert_eq!(l.expired(&img, 9001), vec![Verdict::Fence(2)]);
        assert_eq!(
            l.expired(&img, 14001),
            vec![Verdict::Fence(1), Verdict::Fence(2)]
        );
    }

    #[test]
    fn a_fenced_broker_that_heartbeats_is_unfenced_and_not_fenced_twice() {
        let mut img = image(&[1, 2]);
        img.apply(&MetadataRecord::BrokerFencing {
            node_id: 2,
            fenced: true,
        });
        let mut l = Liveness::new(9000);
        l.lead(1, 0);
        assert!(l
            .expired(&img, 20_000)
            .iter()
            .all(|v| *v != Verdict::Fence(2)));
        assert_eq!(l.heartbeat(&img, 2, 20_000), Some(Verdict::Unfence(2)));
        assert_eq!(l.heartbeat(&img, 1, 20_000), None);
    }

    #[test]
    fn a_new_term_starts_with_a_fresh_grace() {
        let img = image(&[1]);
        let mut l = Liveness::new(9000);
        l.lead(1, 0);
        l.heartbeat(&img, 1, 1000);
        l.follow();
        l.lead(2, 50_000);
        assert!(l.expired(&img, 58_000).is_empty());
        assert_eq!(l.expired(&img, 59_001), vec![Verdict::Fence(1)]);
        // The same term again keeps what it heard.
        l.heartbeat(&img, 1, 59_000);
        l.lead(2, 60_000);
        assert!(l.expired(&img, 60_000).is_empty());
    }

    #[test]
    fn a_controller_that_stood_still_fences_nobody_for_its_own_silence() {
        let img = image(&[1, 2]);
        let mut l = Liveness::new(9000);
        l.lead(1, 0);
        l.heartbeat(&img, 1, 1000);
        l.heartbeat(&img, 2, 1000);
        l.lead(1, 1000);
        // Frozen for 20 s: on waking, nobody is expired yet.
        l.lead(1, 21_000);
        assert!(l.expired(&img, 21_000).is_empty());
        // A broker that keeps heartbeating stays; one that stays silent a whole session
        // after the stall is fenced.
        for now in (22_000..=30_000).step_by(1000) {
            l.heartbeat(&img, 1, now);
            l.lead(1, now);
        }
        l.lead(1, 30_001);
        assert_eq!(l.expired(&img, 30_001), vec![Verdict::Fence(2)]);
    }
}
