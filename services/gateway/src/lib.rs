//! The smooch gateway service.
