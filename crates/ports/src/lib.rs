//! ports (placeholder: filled in by its issue).
