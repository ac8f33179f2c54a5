//! (conn: not written yet)
