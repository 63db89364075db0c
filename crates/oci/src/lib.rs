//! OCI runtime spec generation and runtime backends (embedded libcontainer, runc, crun, youki). Arrives with issue "run a pod".
