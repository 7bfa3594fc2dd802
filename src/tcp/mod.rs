//! TCP stream machinery: per-direction reassembly, output log, offset maps, and the
//! translation of sequence, acknowledgement, SACK and window fields.
