//! Why a pull or push failed, in terms a user can act on: which registry,
//! which image (and for a push the step), and for auth failures where
//! credentials were looked for.

use crate::digest::Digest;
use crate::error::StoreError;

/// What was being done when an error happened, for its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pulling,
    Pushing,
}

impl Action {
    fn preposition(self) -> &'static str {
        match self {
            Action::Pulling => "from",
            Action::Pushing => "to",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Pulling => "pulling",
            Action::Pushing => "pushing",
        })
    }
}

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
    #[error("{action} {reference}: registry {registry} requires authentication and no credentials for it were found ({looked}); log in with `docker login {registry}`")]
    AuthRequired {
        action: Action,
        registry: String,
        reference: String,
        looked: String,
    },
    #[error("{action} {reference}: registry {registry} refused {sent}{detail}")]
    AuthRefused {
        action: Action,
        registry: String,
        reference: String,
        /// What was sent and where it was found: "the credentials of alice
        /// ($HOME/.docker/config.json)".
        sent: String,
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
    #[error("{action} {reference} {} {registry}: {reason}", .action.preposition())]
    Protocol {
        action: Action,
        registry: String,
        reference: String,
        reason: String,
    },
    #[error("{action} {reference}: {source}")]
    Store {
        action: Action,
        reference: String,
        #[source]
        source: StoreError,
    },
}
