//! The pod manager: decides what to do from spec, status and clock. Not yet implemented.
