//! Transactions (KIP-98): the records of `__transaction_state` ([`log`]), the
//! coordinator's state machine for one transactional id ([`metadata`]), the coordinator
//! around it ([`coordinator`]) and what partition leaders do with markers ([`markers`]).

pub mod coordinator;
pub mod log;
pub mod markers;
pub mod metadata;

#[cfg(test)]
mod sim;
