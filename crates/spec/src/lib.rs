//! Pod, ConfigMap and Secret model: strict parse, validation and API-server defaults (no I/O). Arrives with issue "run a pod".
