//! CRI v1 gRPC server over the runtime trait. Not yet implemented.
