//! One partition's replication state on one broker, as a pure state machine: the
//! metadata (leader, epochs, replicas, ISR) the image gives it, and on the leader what it
//! knows of each follower, from which follow the high watermark and the ISR changes it
//! asks the controller for. Events come in with the time and the log end offset; no
//! clocks, sockets, threads or files, so the rules are tested and simulated directly.

use std::collections::BTreeMap;

/// The partition as the metadata image describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl From<&fjord_controller::PartitionImage> for Assignment {
    fn from(p: &fjord_controller::PartitionImage) -> Assignment {
        Assignment {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
        }
    }
}

/// What the leader knows of one follower (Kafka's replica state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// Its log end offset as of its last fetch in this leader epoch; -1 before that.
    pub log_end_offset: i64,
    /// When it last held everything the leader had (ms).
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end offset at the follower's previous fetch.
    leader_end_at_last_fetch: i64,
}

/// An ISR change for the controller to commit (AlterPartition), with the epochs it is
/// based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone)]
struct Leading {
    followers: BTreeMap<i32, FollowerState>,
    /// The log end offset when this broker became leader: a follower below it has not
    /// yet caught up with anything this leader holds.
    epoch_start_offset: i64,
    /// An ISR change sent to the controller and not yet seen in the image.
    in_flight: Option<IsrProposal>,
}

#[derive(Debug, Clone)]
pub struct ReplicaState {
    node_id: i32,
    pub assignment: Assignment,
    leading: Option<Leading>,
    high_watermark: i64,
}

impl ReplicaState {
    /// A replica opened with `high_watermark` (its checkpoint, at most its log end).
    pub fn new(
        node_id: i32,
        assignment: Assignment,
        high_watermark: i64,
        leo: i64,
        now_ms: i64,
    ) -> Self {
        let mut s = ReplicaState {
            node_id,
            assignment: Assignment {
                leader: -1,
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: vec![],
                isr: vec![],
            },
            leading: None,
            high_watermark,
        };
        s.apply(assignment, leo, now_ms);
        s
    }

    pub fn is_leader(&self) -> bool {
        self.leading.is_some()
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn follower(&self, id: i32) -> Option<FollowerState> {
        self.leading.as_ref()?.followers.get(&id).copied()
    }

    /// A new assignment from the image. Becoming leader (or leader in a new epoch)
    /// starts follower tracking afresh: each follower gets a full lag period from now to
    /// show it is caught up. Returns whether the leadership changed.
    pub fn apply(&mut self, next: Assignment, leo: i64, now_ms: i64) -> bool {
        let was = (self.assignment.leader, self.assignment.leader_epoch);
        let leads = next.leader == self.node_id;
        let new_term = (next.leader, next.leader_epoch) != was;
        if leads && (new_term || self.leading.is_none()) {
            let followers = next
                .replicas
                .iter()
                .filter(|&&r| r != self.node_id)
                .map(|&r| {
                    (
                        r,
                        FollowerState {
                            log_end_offset: -1,
                            last_caught_up_ms: now_ms,
                            last_fetch_ms: now_ms,
                            leader_end_at_last_fetch: -1,
                        },
                    )
                })
                .collect();
            self.leading = Some(Leading {
                followers,
                epoch_start_offset: leo,
                in_flight: None,
            });
        } else if !leads {
            self.leading = None;
        }
        if let Some(l) = &mut self.leading {
            // Whatever was in flight was answered by this state, or lost to it.
            if next.partition_epoch != self.assignment.partition_epoch {
                l.in_flight = None;
            }
            // A reassignment may add replicas: track them too.
            for &r in &next.replicas {
                if r != self.node_id {
                    l.followers.entry(r).or_insert(FollowerState {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                        last_fetch_ms: now_ms,
                        leader_end_at_last_fetch: -1,
                    });
                }
            }
            l.followers.retain(|r, _| next.replicas.contains(r));
        }
        self.assignment = next;
        if self.is_leader() {
            self.advance_high_watermark(leo);
        }
        new_term
    }

    /// This broker no longer hosts the partition (its topic was deleted, or a
    /// reassignment moved the replica away): it leads nothing, so writes still waiting
    /// for replication are answered NOT_LEADER_OR_FOLLOWER and retried at the new leader.
    pub fn stop(&mut self) {
        self.leading = None;
        self.assignment.leader = -1;
    }

    /// The leader's log grew (or this replica's, as a follower: the leader's high
    /// watermark comes with the fetch instead). Returns whether the high watermark moved.
    pub fn appended(&mut self, leo: i64) -> bool {
        self.is_leader() && self.advance_high_watermark(leo)
    }

    /// A follower fetched from `fetch_offset` (its log end offset) at `now_ms`, the
    /// leader's log ending at `leo`. Returns whether the high watermark moved, and an ISR
    /// expansion to propose if the follower has caught up.
    pub fn follower_fetched(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leo: i64,
        now_ms: i64,
    ) -> (bool, Option<IsrProposal>) {
        let Some(l) = &mut self.leading else {
            return (false, None);
        };
        let Some(f) = l.followers.get_mut(&follower) else {
            return (false, None);
        };
        // Kafka's rule: caught up now if it has everything; caught up as of its previous
        // fetch if it now has what the leader had then.
        if fetch_offset >= leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.leader_end_at_last_fetch >= 0 && fetch_offset >= f.leader_end_at_last_fetch {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end_offset = fetch_offset;
        f.last_fetch_ms = now_ms;
        f.leader_end_at_last_fetch = leo;
        let moved = self.advance_high_watermark(leo);
        (moved, self.expansion(follower))
    }

    /// An ISR expansion for `follower`, if it is out of the ISR and has caught up with
    /// the high watermark and with this leader's epoch.
    fn expansion(&mut self, follower: i32) -> Option<IsrProposal> {
        let hw = self.high_watermark;
        let a = &self.assignment;
        let l = self.leading.as_mut()?;
        if l.in_flight.is_some() || a.isr.contains(&follower) {
            return None;
        }
        let f = l.followers.get(&follower)?;
        if f.log_end_offset < hw || f.log_end_offset < l.epoch_start_offset {
            return None;
        }
        let isr: Vec<i32> = a
            .replicas
            .iter()
            .copied()
            .filter(|r| a.isr.contains(r) || *r == follower)
            .collect();
        let p = IsrProposal {
            leader_epoch: a.leader_epoch,
            partition_epoch: a.partition_epoch,
            isr,
        };
        l.in_flight = Some(p.clone());
        Some(p)
    }

    /// Periodic check on the leader: followers in the ISR that have not caught up for
    /// `lag_time_max_ms` are proposed out of it.
    pub fn check_lagging(&mut self, now_ms: i64, lag_time_max_ms: i64) -> Option<IsrProposal> {
        let node = self.node_id;
        let a = &self.assignment;
        let l = self.leading.as_mut()?;
        if l.in_flight.is_some() {
            return None;
        }
        let lagging: Vec<i32> = a
            .isr
            .iter()
            .copied()
            .filter(|&r| r != node)
            .filter(|r| {
                l.followers
                    .get(r)
                    .is_some_and(|f| now_ms - f.last_caught_up_ms > lag_time_max_ms)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let p = IsrProposal {
            leader_epoch: a.leader_epoch,
            partition_epoch: a.partition_epoch,
            isr: a
                .isr
                .iter()
                .copied()
                .filter(|r| !lagging.contains(r))
                .collect(),
        };
        l.in_flight = Some(p.clone());
        Some(p)
    }

    /// Whether `proposal` is still the one in flight (no newer metadata has settled it).
    pub fn proposal_pending(&self, proposal: &IsrProposal) -> bool {
        self.leading
            .as_ref()
            .is_some_and(|l| l.in_flight.as_ref() == Some(proposal))
    }

    /// The controller refused the proposal in flight in a way that proves it was not
    /// applied: forget it, so the next event may propose again.
    pub fn proposal_failed(&mut self) {
        if let Some(l) = &mut self.leading {
            l.in_flight = None;
        }
    }

    /// On a follower: the leader's high watermark arrived with a fetch, the follower's
    /// log ending at `leo`. Returns whether it moved.
    pub fn follower_high_watermark(&mut self, leader_hw: i64, leo: i64) -> bool {
        let hw = leader_hw.min(leo);
        if !self.is_leader() && hw > self.high_watermark {
            self.high_watermark = hw;
            return true;
        }
        false
    }

    /// The log start moved to `offset` (DeleteRecords): nothing below it is waited for.
    pub fn raise_high_watermark(&mut self, offset: i64) {
        self.high_watermark = self.high_watermark.max(offset);
    }

    /// This replica's log was truncated to `leo`: nothing above it can be below the high
    /// watermark. Only a follower truncates, and only above what was committed.
    pub fn truncated(&mut self, leo: i64) {
        self.high_watermark = self.high_watermark.min(leo);
    }

    /// The high watermark is the smallest log end offset over the ISR (and over a
    /// follower being added to it, whose joining must not let it fall behind), never
    /// moving backwards. Returns whether it moved.
    fn advance_high_watermark(&mut self, leo: i64) -> bool {
        let Some(l) = &self.leading else {
            return false;
        };
        let a = &self.assignment;
        let pending = l
            .in_flight
            .as_ref()
            .map(|p| p.isr.as_slice())
            .unwrap_or(&[]);
        let mut hw = leo;
        for r in a.isr.iter().chain(pending) {
            if *r == self.node_id {
                continue;
            }
            match l.followers.get(r) {
                Some(f) => hw = hw.min(f.log_end_offset),
                // A member this leader has no state for has shown nothing yet.
                None => hw = hw.min(-1),
            }
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(leader: i32, epoch: i32, isr: &[i32]) -> Assignment {
        Assignment {
            leader,
            leader_epoch: epoch,
            partition_epoch: 0,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn high_watermark_is_the_smallest_end_in_the_isr() {
        let mut s = ReplicaState::new(1, assignment(1, 0, &[1, 2, 3]), 0, 0, 0);
        assert!(!s.appended(10), "followers have not fetched");
        s.follower_fetched(2, 10, 10, 1);
        assert_eq!(s.high_watermark(), 0);
        let (moved, _) = s.follower_fetched(3, 7, 10, 2);
        assert!(moved);
        assert_eq!(s.high_watermark(), 7);
        // Never backwards, even if a follower reports less (it truncated).
        s.follower_fetched(3, 5, 10, 3);
        assert_eq!(s.high_watermark(), 7);
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_a_caught_up_one_back_in() {
        let mut s = ReplicaState::new(1, assignment(1, 0, &[1, 2, 3]), 0, 0, 0);
        s.appended(10);
        s.follower_fetched(2, 10, 10, 100);
        assert_eq!(s.check_lagging(30_000, 30_000), None, "3 within its grace");
        let out = s.check_lagging(30_001, 30_000).expect("3 lags");
        assert_eq!(out.isr, vec![1, 2]);
        assert_eq!(
            s.check_lagging(40_000, 30_000),
            None,
            "one change at a time"
        );
        s.apply(
            Assignment {
                partition_epoch: 1,
                ..assignment(1, 0, &[1, 2])
            },
            10,
            40_000,
        );
        assert_eq!(s.high_watermark(), 10, "3 no longer holds it back");
        let (_, none) = s.follower_fetched(3, 5, 10, 40_001);
        assert_eq!(none, None, "below the high watermark");
        let (_, back) = s.follower_fetched(3, 10, 10, 40_002);
        assert_eq!(back.map(|p| p.isr), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_follower_below_the_leaders_epoch_start_does_not_rejoin() {
        // Became leader with 20 records, of which only 15 are known committed.
        let mut s = ReplicaState::new(1, assignment(1, 3, &[1]), 15, 20, 0);
        assert_eq!(
            s.high_watermark(),
            20,
            "alone in the ISR, everything is committed"
        );
        let (_, p) = s.follower_fetched(2, 18, 20, 1);
        assert_eq!(p, None);
    }

    #[test]
    fn a_follower_takes_the_leaders_high_watermark_up_to_its_own_end() {
        let mut s = ReplicaState::new(2, assignment(1, 0, &[1, 2, 3]), 0, 0, 0);
        assert!(s.follower_high_watermark(50, 30));
        assert_eq!(s.high_watermark(), 30);
        s.truncated(20);
        assert_eq!(s.high_watermark(), 20);
    }
}
