//! The smooch media service.
