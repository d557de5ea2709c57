//! In-process tests of the key commands.
