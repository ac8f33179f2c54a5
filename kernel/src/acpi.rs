//! (acpi: not written yet)
