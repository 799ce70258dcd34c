//! Why a pull failed, in terms a user can act on: which registry, which
//! image, and for auth failures where credentials were looked for.

use crate::digest::Digest;
use crate::error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry} ({url}): {reason}{hint}")]
    Unreachable {
        registry: String,
        url: String,
        reason: String,
        /// Advice when plain HTTP or TLS may be the cause.
        hint: String,
    },
    #[error("image {reference} not found: {reason}")]
    NotFound { reference: String, reason: String },
    #[error("pulling {reference}: registry {registry} requires authentication and no credentials for it were found ({looked}); log in with `docker login {registry}`")]
    AuthRequired {
        registry: String,
        reference: String,
        looked: String,
    },
    #[error("pulling {reference}: registry {registry} refused {sent} ({looked}){detail}")]
    AuthRefused {
        registry: String,
        reference: String,
        /// What was sent: "the credentials of alice", "the identity token".
        sent: String,
        looked: String,
        detail: String,
    },
    #[error("cannot read credentials for registry {registry} from {looked}: {reason}")]
    Credentials {
        registry: String,
        looked: String,
        reason: String,
    },
    #[error("image {reference} has no manifest for platform {platform} (it offers: {offered})")]
    NoPlatform {
        reference: String,
        platform: String,
        offered: String,
    },
    #[error("pulling {reference}: {what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot use image {reference}: {reason}")]
    Unsupported { reference: String, reason: String },
    #[error("pulling {reference} from {registry}: {reason}")]
    Protocol {
        registry: String,
        reference: String,
        reason: String,
    },
    #[error("pulling {reference}: {source}")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
}
