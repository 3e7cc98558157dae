//! The `agentapi-proxy` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    agentapi_proxy::cli::main()
}
