//! Transactions (KIP-98): the records of `__transaction_state` ([`log`]), the
//! coordinator's state machine for one transactional id ([`metadata`]), the coordinator
//! around it ([`coordinator`]) what partition leaders do with markers ([`markers`]), and the check that a
//! transactional write belongs to an open transaction ([`verify`]).

pub mod coordinator;
pub mod log;
pub mod markers;
pub mod metadata;
pub mod verify;

#[cfg(test)]
mod sim;
