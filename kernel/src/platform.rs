//! Platform bring-up entry point (owned by the platform-devices work; empty until it lands).
