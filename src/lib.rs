//! smooch library.
