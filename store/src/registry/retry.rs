//! When a registry request is tried again, shared by the push and its uploads: how many
//! times, how long to wait, and which failures a retry can help.

use std::time::Duration;

use oci_client::errors::OciDistributionError;

/// Tries of one request before its error is the push's.
pub(super) const ATTEMPTS: u32 = 5;
/// The wait before the first retry; doubled before each next one.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Whether a failed request may work when tried again: the registry was busy
/// or failed (408, 429, 5xx), or the connection broke.
pub(super) fn is_transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => matches!(code, 408 | 429 | 500..=599),
        OciDistributionError::RequestError(e) => !e.is_builder() && !e.is_redirect() && !e.is_decode(),
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// A retried error in a few words, for progress output.
pub(super) fn transient_reason(error: &OciDistributionError) -> String {
    match error {
        OciDistributionError::ServerError { code, .. } => format!("the registry answered HTTP {code}"),
        OciDistributionError::RequestError(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
        other => other.to_string(),
    }
}
