//! Pod networking: CNI client, hosts and resolv.conf, port mappings. Not yet implemented.
