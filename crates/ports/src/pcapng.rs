//! pcapng (placeholder)
