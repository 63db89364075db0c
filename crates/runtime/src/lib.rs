//! Sandboxes, containers and images behind a CRI-shaped trait; state in SQLite. Not yet implemented.
