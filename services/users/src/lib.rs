//! The smooch users service.
