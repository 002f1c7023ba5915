//! SaslHandshake and SaslAuthenticate where no login is under way: on a listener without
//! SASL, or on a connection that has logged in already. The login itself is part of the
//! connection ([`crate::security::sasl`]), since it decides what the connection may do.

use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

use super::str;
use crate::error::code::ILLEGAL_SASL_STATE;

pub fn handshake_refused() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE)
}

pub fn authenticate_refused() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ILLEGAL_SASL_STATE)
        .with_error_message(Some(str(
            "SaslAuthenticate is only expected during a SASL login on a SASL listener",
        )))
}
