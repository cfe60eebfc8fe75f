//! The one error every delivery returns (a broadcast driver, Slack, email, the HTTP client
//! under them): the worker only needs to know whether another attempt can help.

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// A passing fault (connection, timeout, 5xx): retry with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (rejected credentials, payload too large): fail at once.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    /// True when a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable(_))
    }
}
