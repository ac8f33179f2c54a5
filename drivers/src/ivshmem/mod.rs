//! ivshmem-doorbell device and the ISM device over its shared region (not written yet).
