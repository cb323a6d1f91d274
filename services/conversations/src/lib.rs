//! The smooch conversations service.
