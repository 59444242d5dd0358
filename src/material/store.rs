//! Inline entries persisted encrypted at rest (AES-256-GCM), written atomically.
