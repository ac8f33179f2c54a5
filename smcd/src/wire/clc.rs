//! (clc: not written yet)
