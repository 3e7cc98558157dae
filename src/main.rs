//! The `agentapi-proxy` binary: parses the command line and hands over to the library.

/// mimalloc: the request path allocates small objects at a high rate; glibc's allocator was
/// the largest single cost in profiles of the proxy path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    agentapi_proxy::cli::main()
}
