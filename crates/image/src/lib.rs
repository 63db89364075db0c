//! Images: references, registry client, content store, layer unpacking,
//! snapshots keyed by chain ID, and overlay root filesystems for containers.
