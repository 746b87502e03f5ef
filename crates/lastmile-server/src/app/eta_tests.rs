//! (tests of the ETA calibration: being written)
