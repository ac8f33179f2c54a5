//! virtio-net and the SMC TCP-option middleware (not written yet).
