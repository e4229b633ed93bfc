//! The cycle-accurate emulator.
