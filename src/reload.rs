//! The single writer: applies entry and config changes, rebuilds dependent snapshots.
