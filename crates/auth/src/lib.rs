//! Credential verification.
