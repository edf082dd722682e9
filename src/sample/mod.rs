//! The sample seller center.
