//! Who a connection is: its listener, its TLS and SASL, and the principal it
//! authenticated as (Kafka's `User:<name>`, or `User:ANONYMOUS`).

pub mod authz;
pub mod client;
pub mod quorum;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{ClientListener, ListenerSecurity, SecurityConfig, SecurityProtocol};
use crate::error::BrokerError;

/// Kafka's principal for a connection that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A client listener as connections see it: its name and protocol, its TLS acceptor and
/// SASL mechanisms.
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub tls: Option<tls::ServerTls>,
    pub principal_mapper: Option<tls::PrincipalMapper>,
    pub security: ListenerSecurity,
}

impl Listener {
    /// Reads the listener's certificates; an error names the listener and the file.
    pub fn new(
        config: &ClientListener,
        security: &SecurityConfig,
    ) -> Result<Listener, BrokerError> {
        let settings = security
            .listeners
            .get(&config.name)
            .cloned()
            .unwrap_or_default();
        let (tls, principal_mapper) = match &settings.tls {
            Some(t) => (
                Some(tls::ServerTls::new(t, &config.name).map_err(BrokerError::Startup)?),
                Some(
                    tls::PrincipalMapper::parse(&t.principal_mapping_rules)
                        .map_err(BrokerError::Startup)?,
                ),
            ),
            None => (None, None),
        };
        Ok(Listener {
            name: config.name.clone(),
            protocol: config.protocol,
            tls,
            principal_mapper,
            security: settings,
        })
    }

    /// A listener with no security, for tests and tools that build a broker by hand.
    pub fn plaintext(name: &str) -> Listener {
        Listener {
            name: name.to_string(),
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            principal_mapper: None,
            security: ListenerSecurity::default(),
        }
    }
}

/// One connection's identity, handed to every request it makes.
#[derive(Debug, Clone)]
pub struct Session {
    pub peer: SocketAddr,
    /// The listener the client came through; Metadata answers with that listener's
    /// addresses.
    pub listener: Arc<str>,
    /// `User:<name>`, or `User:ANONYMOUS`.
    pub principal: Arc<str>,
}

impl Session {
    pub fn new(peer: SocketAddr, listener: &str, principal: &str) -> Session {
        Session {
            peer,
            listener: Arc::from(listener),
            principal: Arc::from(principal),
        }
    }
}
