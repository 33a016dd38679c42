"""jubao server: the multi-tenant gRPC financial cloud."""
